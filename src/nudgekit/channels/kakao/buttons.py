"""Kakao message buttons, shared by AlimTalk and Brand Message, and the checks Kakao applies to them."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from nudgekit.channels.check import Checked
from nudgekit.vocabulary import KakaoButtonType

KNOWN_BUTTONS = frozenset(t.value for t in KakaoButtonType)
"""Button types we model; a provider's template with others (plugins, call buttons) keeps only these."""
NAME_CHARS = 14
"""Kakao cuts a button's name at 14 characters."""


class KakaoButton(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: KakaoButtonType
    name: str
    url_mobile: str | None = None
    url_pc: str | None = None
    scheme_android: str | None = None
    scheme_ios: str | None = None

    def links(self) -> dict[str, str]:
        return {k: v for k in ("url_mobile", "url_pc", "scheme_android", "scheme_ios") if (v := getattr(self, k))}

    def filled(self, fill: dict[str, str]) -> KakaoButton:
        """The button with #{variables} in its links replaced (AlimTalk links may carry variables)."""
        from nudgekit.channels.kakao.templates import fill_text

        return self.model_copy(update={k: fill_text(v, fill)[0] for k, v in self.links().items()})


def _web(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def check_buttons(out: Checked, buttons: list[KakaoButton], limit: int) -> None:
    """Count, names and links as Kakao requires them."""
    if len(buttons) > limit:
        out.problem("buttons", "too_many_buttons", f"This message can have at most {limit} buttons, not {len(buttons)}.",
                    f"이 메시지에는 버튼을 최대 {limit}개까지 넣을 수 있습니다(지금 {len(buttons)}개).")
    for i, button in enumerate(buttons, start=1):
        where = f"buttons[{i}]"
        name = button.name.strip()
        if not name:
            out.problem(where, "button_without_name", "A button needs a name.", "버튼 이름이 비어 있습니다.")
        elif len(name) > NAME_CHARS:
            out.problem(where, "button_name_too_long",
                        f'"{name}" is {len(name)} characters; a button name holds at most {NAME_CHARS}.',
                        f'버튼 이름 "{name}"은(는) {len(name)}자입니다. 최대 {NAME_CHARS}자까지 쓸 수 있습니다.')
        check_links(out, where, button)


def check_links(out: Checked, where: str, button: KakaoButton) -> None:
    if button.type == KakaoButtonType.WEB_LINK:
        if not button.url_mobile:
            out.problem(where, "button_without_link", "A web-link button needs a mobile URL (url_mobile).",
                        "웹링크 버튼에는 모바일 URL(url_mobile)이 있어야 합니다.")
        for url in (button.url_mobile, button.url_pc):
            if url and "#{" not in url and not _web(url):
                out.problem(where, "bad_url", f"{url} is not a web address (http:// or https://).",
                            f"{url}은(는) 웹 주소(http:// 또는 https://)가 아닙니다.")
    elif button.type == KakaoButtonType.APP_LINK:
        given = [v for v in (button.url_mobile, button.scheme_android, button.scheme_ios) if v]
        if len(given) < 2:
            out.problem(where, "app_link_incomplete",
                        "An app-link button needs two of: url_mobile, scheme_android, scheme_ios.",
                        "앱링크 버튼에는 url_mobile, scheme_android, scheme_ios 중 두 가지 이상이 있어야 합니다.")
    elif any((button.url_mobile, button.url_pc, button.scheme_android, button.scheme_ios)):
        out.problem(where, "button_takes_no_link", f"A {button.type.name.lower().replace('_', ' ')} button has no link.",
                    f"{button.type.value} 버튼에는 링크를 넣을 수 없습니다.")
