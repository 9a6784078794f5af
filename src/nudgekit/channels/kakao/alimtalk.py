"""A Kakao AlimTalk (알림톡): informational only, sent from a template Kakao approved.

Kakao compares every AlimTalk with its approved template; a text that differs anywhere but in the
`#{variables}` is refused (NHN -3016, "content differs from template"). So the message names the template
and gives the variables' values; a text written out in full is accepted only when it equals the template
filled with those values, and the check says where it first differs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from nudgekit.channels.check import Checked, Size
from nudgekit.channels.kakao import fallback as kakao_fallback
from nudgekit.channels.kakao.buttons import KakaoButton, check_links
from nudgekit.channels.kakao.profile import require_channel
from nudgekit.channels.kakao.templates import TEXT_CHARS, Template, fill_text, variables_of
from nudgekit.channels.sms.message import normalised
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.vocabulary import MessageChannel, TemplateStatus


class AlimtalkMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str
    """The template code, as listed by `nudge kakao templates list`."""
    variables: dict[str, str | int | float] = Field(default_factory=dict)
    """Values of the template's #{variables}, by name without #{ }."""
    text: str | None = None
    """Optional: the full text; it must equal the template filled with the variables."""
    ad: bool = False
    """Advertising cannot go by AlimTalk; set only so the check can say so."""
    fallback: bool = True
    """Send a text message instead when the recipient cannot be reached on Kakao."""
    fallback_text: str | None = None
    """The fallback's text; default the AlimTalk's own text."""
    fallback_subject: str | None = None
    sender_number: str | None = None
    """The fallback's sender number; default the first registered one."""

    def values(self) -> dict[str, str]:
        return {k.removeprefix("#{").removesuffix("}"): str(v) for k, v in self.variables.items()}


def check(message: AlimtalkMessage, template: Template | None, sender: SenderSettings,
          prices: PriceSettings) -> Checked:
    out = Checked(MessageChannel.ALIMTALK, None, prices.alimtalk)
    require_channel(out, sender)
    if message.ad:
        out.problem("ad", "alimtalk_is_informational",
                    "AlimTalk carries information only (orders, deliveries, bookings); advertising goes as a "
                    "Brand Message.",
                    "알림톡은 정보성 메시지(주문, 배송, 예약 안내 등)만 보낼 수 있습니다. 광고는 브랜드 메시지로 보내세요.")
    if template is None:
        out.problem("template", "unknown_template",
                    f'There is no template "{message.template}": run `nudge kakao templates sync` (or add it for '
                    "the sandbox with `nudge kakao templates add`).",
                    f'"{message.template}" 템플릿이 없습니다. `nudge kakao templates sync`로 템플릿을 받아 오세요.')
        return out
    if template.status != TemplateStatus.APPROVED:
        why = f" ({template.comment})" if template.comment else ""
        out.problem("template", "template_not_approved",
                    f'Template "{template.code}" is {template.status.value}{why}; only approved templates can be sent.',
                    f'"{template.code}" 템플릿은 아직 승인되지 않았습니다({template.status.value}{why}). 승인된 템플릿만 '
                    "보낼 수 있습니다.")
    text = _filled(out, message, template)
    buttons = _filled_buttons(out, message, template)
    if message.fallback and not any(p.code == "missing_variable" for p in out.problems):
        out.attach(kakao_fallback.compose(message.fallback_text or text, subject=message.fallback_subject,
                                          sender_number=message.sender_number, ad=False, buttons=buttons,
                                          sender=sender, prices=prices))
    return out


def _filled(out: Checked, message: AlimtalkMessage, template: Template) -> str:
    values = message.values()
    text, missing = fill_text(template.content, values)
    for name in missing:
        out.problem(f"variables.{name}", "missing_variable",
                    f'The template needs a value for #{{{name}}}.', f"템플릿 변수 #{{{name}}}의 값이 없습니다.")
    extra = [name for name in values if name not in template.variables]
    if extra:
        names = ", ".join(extra)
        out.warn("variables", "unused_variable", f"The template has no variable {names}: is the name misspelt?",
                 f"템플릿에 없는 변수입니다: {names}. 이름이 맞는지 확인해 주세요.")
    out.sizes["text"] = Size(len(text), TEXT_CHARS, "characters")
    if len(text) > TEXT_CHARS:
        out.problem("text", "too_long",
                    f"Filled in, the text is {len(text):,} characters; an AlimTalk holds at most {TEXT_CHARS:,}.",
                    f"변수를 채운 본문이 {len(text):,}자입니다. 알림톡은 최대 {TEXT_CHARS:,}자까지 보낼 수 있습니다.")
    if message.text is not None and not missing:
        _compare(out, normalised(message.text), text)
    out.rendered["text"] = text
    return text


def _filled_buttons(out: Checked, message: AlimtalkMessage, template: Template) -> list[KakaoButton]:
    """The template's buttons with their links filled; a link variable without a value, or a filled link that
    is not an address (a value that made `https://#{host}` into `https://`), is a problem before Kakao sees it."""
    values = message.values()
    in_text = set(variables_of(template.content))
    filled = []
    for i, button in enumerate(template.buttons, start=1):
        links = button.links().values()
        missing = [n for n in dict.fromkeys(n for link in links for n in variables_of(link)) if n not in values]
        for name in missing:
            if name in in_text:
                continue  # already named by the text's check
            out.problem(f"variables.{name}", "missing_variable",
                        f'Button {i} ("{button.name}") links with #{{{name}}}: the template needs a value for it.',
                        f'{i}번 버튼("{button.name}")의 링크에 쓰인 변수 #{{{name}}}의 값이 없습니다.')
        done = button.filled(values)
        if not missing:
            check_links(out, f"buttons[{i}]", done)
        filled.append(done)
    if filled:
        out.rendered["buttons"] = [b.model_dump(mode="json", exclude_none=True) for b in filled]
    return filled


def _compare(out: Checked, written: str, expected: str) -> None:
    if written == expected:
        return
    at = next((i for i, (a, b) in enumerate(zip(written, expected, strict=False)) if a != b),
              min(len(written), len(expected)))
    start = max(0, at - 10)
    seen, wanted = written[start:at + 15], expected[start:at + 15]
    out.problem("text", "text_differs_from_template",
                f"The text differs from the approved template at character {at + 1}: it has {seen!r} where the "
                f"template gives {wanted!r}. Kakao refuses any change outside the #{{variables}}.",
                f"본문이 승인된 템플릿과 {at + 1}번째 글자부터 다릅니다({seen!r} / 템플릿: {wanted!r}). 변수 밖의 내용은 "
                "바꿀 수 없습니다.")
