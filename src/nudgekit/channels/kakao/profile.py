"""The workspace's Kakao channel (발신 프로필), which every Kakao message is sent from."""

from __future__ import annotations

from nudgekit.channels.check import Checked
from nudgekit.config import SenderSettings


def require_channel(out: Checked, sender: SenderSettings) -> None:
    if not sender.kakao_sender_key:
        out.problem("sender", "no_kakao_channel",
                    "No Kakao channel is set: put its sender key under [sender] kakao_sender_key in nudge.toml.",
                    "카카오 채널이 설정되지 않았습니다. nudge.toml의 [sender] kakao_sender_key에 발신 프로필 키를 "
                    "적어 주세요.")
