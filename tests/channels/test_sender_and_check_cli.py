"""Sender settings in nudge.toml and `nudge sender` / `nudge message check`, driven as a marketer drives them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from nudgekit.cli import app
from nudgekit.config import load_settings
from nudgekit.profiles.contacts import FieldError
from nudgekit.workspace import Workspace


@pytest.fixture
def home(tmp_path: Path) -> Path:
    Workspace.init(tmp_path / "ws")[0].close()
    return tmp_path / "ws"


def nudge(home: Path, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner(env={"NUDGE_HOME": str(home)}).invoke(app, list(args), input=stdin)


def test_sender_set_writes_nudge_toml_and_keeps_its_comments(home: Path) -> None:
    before = (home / "nudge.toml").read_text(encoding="utf-8")
    result = nudge(home, "sender", "set", "--name", "뉴지샵", "--sms-number", "02-1234-5678", "--sms-number",
                   "1588 1234", "--optout-080", "080-111-2222", "--email-from", "News@Example.COM", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sms_numbers"] == ["0212345678", "15881234"]
    after = (home / "nudge.toml").read_text(encoding="utf-8")
    assert "# workspace time zone" in after and before.splitlines()[0] == after.splitlines()[0]
    settings = load_settings(home)
    assert settings.sender.name == "뉴지샵" and settings.sender.optout_080 == "0801112222"
    assert settings.sender.email_from == "news@example.com"
    assert settings.lifecycle.churn_days == 30  # the rest of the file still reads the same
    shown = nudge(home, "sender", "show")
    assert "02-1234-5678" in shown.stdout and "뉴지샵" in shown.stdout
    removed = nudge(home, "sender", "set", "--remove-sms-number", "1588-1234", "--optout-080", "", "--name", "",
                    "--json")
    assert json.loads(removed.stdout)["sms_numbers"] == ["0212345678"]
    cleared = load_settings(home).sender
    assert cleared.optout_080 is None and cleared.name is None and cleared.email_from == "news@example.com"


@pytest.mark.parametrize(("args", "field"), [
    (["--sms-number", "0505-123-4567"], "sender.sms_numbers"),
    (["--sms-number", "1588-12"], "sender.sms_numbers"),
    (["--optout-080", "02-1234-5678"], "sender.optout_080"),
    (["--email-from", "not an address"], "sender.email_from"),
    (["--remove-sms-number", "02-7777-6666"], "sender.sms_numbers"),
])
def test_a_bad_sender_setting_is_refused_and_the_file_is_unchanged(home: Path, args: list[str], field: str) -> None:
    before = (home / "nudge.toml").read_bytes()
    result = nudge(home, "sender", "set", *args, "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["error"].startswith(field)
    assert (home / "nudge.toml").read_bytes() == before


def test_a_bad_number_written_by_hand_in_nudge_toml_is_named(home: Path) -> None:
    config = home / "nudge.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("\n[sender]", '\n[sender]\nsms_numbers = ["0505-000-1111"]'), encoding="utf-8")
    with pytest.raises(ValidationError, match="050 forwarding"):
        load_settings(home)


def test_set_sender_refuses_what_is_not_a_sender_setting(home: Path) -> None:
    with Workspace.open(home) as ws, pytest.raises(FieldError, match="colour"):
        ws.set_sender(colour="red")


def test_message_check_prints_the_type_price_and_reasons(home: Path) -> None:
    nudge(home, "sender", "set", "--sms-number", "02-1234-5678", "--optout-080", "080-111-2222")
    fine = nudge(home, "message", "check", "--channel", "sms", "--text", "주문하신 상품이 발송되었습니다", "--json")
    assert fine.exit_code == 0
    assert json.loads(fine.stdout) | {"sizes": None} == {
        "channel": "sms", "type": "SMS", "ok": True, "cost_krw": 12.0, "sizes": None, "problems": [], "warnings": []}
    refused = nudge(home, "message", "check", "--channel", "sms", "--ad", "--text", "-", "--json",
                    stdin="[광고] 세일 😀\n무료거부 080-111-2222")
    assert refused.exit_code == 1
    assert [p["code"] for p in json.loads(refused.stdout)["problems"]] == ["unsupported_characters", "ad_label_missing"]
    table = nudge(home, "message", "check", "--channel", "sms", "--text", "가" * 46)
    assert table.exit_code == 0 and "LMS" in table.stdout and "92 bytes" in table.stdout and "39 KRW" in table.stdout


def test_prices_come_from_nudge_toml(home: Path) -> None:
    nudge(home, "sender", "set", "--sms-number", "02-1234-5678")
    with (home / "nudge.toml").open("a", encoding="utf-8") as f:
        f.write("\n[prices]\nlms = 27.5\n")
    result = nudge(home, "message", "check", "--channel", "sms", "--text", "가" * 46, "--json")
    assert json.loads(result.stdout)["cost_krw"] == 27.5


def test_every_channel_has_a_check(home: Path) -> None:
    from nudgekit.channels.registry import CHANNELS
    from nudgekit.vocabulary import MessageChannel

    assert set(CHANNELS) == set(MessageChannel)
    result = nudge(home, "message", "check", "--channel", "inapp", "--text", "hi", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["type"] == "modal"
