"""Rule 5, the label and the opt-out line (CHANNEL_RULES A5-A8): advertising starts with "(광고)" and the
sender's name and ends with a free way to refuse, in the form each channel needs —

- text messages: "(광고)" and the name first (an LMS/MMS subject starts with "(광고)" too), "무료거부 080-…"
  (the workspace's registered 080 number) last; the length after adding them decides SMS or LMS;
- email: the subject starts with "(광고)"; the body names the sender and carries the unsubscribe link (the
  person's own signed link when the workspace has a public_url), which also goes in the one-click
  List-Unsubscribe headers;
- push: the title (or the text) starts with "(광고)"; the text ends with how to turn them off in the app.

What is missing is added; authored look-alikes that dodge the exact form ("(광/고)", "(광 고)", "[광고]",
"*광고", "(AD)", …) are refused with the reason, never silently fixed (the law treats them as evasion, A8).
"""

from __future__ import annotations

import html as html_lib
import re
from datetime import datetime

from pydantic import BaseModel

from nudgekit.channels.numbers import spelled
from nudgekit.channels.push.message import OPTOUT_PATH
from nudgekit.channels.sms import message as sms
from nudgekit.config import SenderSettings
from nudgekit.policy.copy import shown
from nudgekit.policy.decision import Candidate, Decision, Person, State, send, skip
from nudgekit.vocabulary import MessageChannel

RULE = "label"
AD_LABEL = sms.AD_LABEL

_OPEN = "(\\[{<（［｛＜【〔《〈「『"
_CLOSE = ")\\]}>）］｝＞】〕》〉」』"
LOOK_ALIKE = re.compile(
    rf"[{_OPEN}][^{_CLOSE}\n]{{0,8}}?광[^가-힣\n]{{0,3}}고[^{_CLOSE}\n]{{0,8}}?[{_CLOSE}]"
    r"|[*＊★☆※#]\s*광\W{0,3}고"
    r"|광[/._,·*\-|~:;]+고"
    r"|[(\[]\s*a\s*\.?\s*d\s*\.?\s*[)\]]",
    re.IGNORECASE)
"""Anything that reads as an advertising label but is not exactly "(광고)"."""


def look_alikes(message: BaseModel) -> list[tuple[str, str]]:
    """(field, the look-alike) for every label that is not exactly "(광고)"."""
    return [(name, m.group(0)) for name, text in shown(message).items()
            for m in LOOK_ALIKE.finditer(text) if m.group(0) != AD_LABEL]


def text_message(body: str, subject: str | None, sender: SenderSettings) -> tuple[str, str | None]:
    """An advertising text message's label, sender name and free opt-out line, each added only when missing."""
    body = body.lstrip()
    name = sender.name or ""
    rest = body.removeprefix(AD_LABEL).lstrip(" ")
    if name and name not in rest[:60]:
        body = f"{AD_LABEL}{name}\n{rest}"
    elif not body.startswith(AD_LABEL):
        body = f"{AD_LABEL} {rest}"
    if subject and not subject.lstrip().startswith(AD_LABEL):
        subject = f"{AD_LABEL}{subject.lstrip()}"
    if sms.OPTOUT_LINE.search(body) is None and sender.optout_080:
        body = f"{body.rstrip()}\n무료거부 {spelled(sender.optout_080)}"
    return body, subject


def _labelled(value: str) -> str:
    value = value.lstrip()
    return value if value.startswith(AD_LABEL) else f"{AD_LABEL} {value}"


def _email(message: BaseModel, sender: SenderSettings) -> BaseModel | Decision:
    url = getattr(message, "unsubscribe_url", None)
    if not url:
        return skip(RULE, "no_unsubscribe_link",
                    "Advertising email needs an unsubscribe link, for the body and the one-click List-Unsubscribe "
                    "header: set public_url (where `nudge serve` is reachable) and each person gets their own, or "
                    "give the message an unsubscribe_url.",
                    "광고 메일에는 수신거부 링크(unsubscribe_url)가 있어야 합니다.")
    changes: dict[str, str] = {"subject": _labelled(message.subject)}  # type: ignore[attr-defined]
    name = getattr(message, "from_name", None) or sender.name or ""
    text, page = getattr(message, "text", None), getattr(message, "html", None)
    if text is not None and url not in text:
        changes["text"] = f"{text.rstrip()}\n\n--\n{name}\n수신거부 / Unsubscribe: {url}\n"
    if page is not None and url not in page and html_lib.escape(url) not in page:
        footer = (f'<p style="font-size:12px;color:#666">{html_lib.escape(name)}<br>'
                  f'<a href="{html_lib.escape(url)}">수신거부 / Unsubscribe</a></p>')
        at = page.lower().rfind("</body>")
        changes["html"] = page[:at] + footer + page[at:] if at >= 0 else page + footer
    return message.model_copy(update=changes)


def _push(message: BaseModel, sender: SenderSettings) -> BaseModel | Decision:
    if getattr(message, "silent", False):
        return message
    title, text = getattr(message, "title", None), getattr(message, "text", None) or ""
    changes: dict[str, str] = {"title": _labelled(title)} if title else {"text": _labelled(text)}
    body = changes.get("text", text)
    if not OPTOUT_PATH.search(body):
        if not sender.push_optout:
            return skip(RULE, "no_push_optout",
                        "Advertising push must say how to turn it off in the app: set [sender] push_optout, e.g. "
                        '"수신거부: 마이 > 설정 > 알림".',
                        '광고 푸시에는 앱에서 수신거부하는 방법이 있어야 합니다. [sender] push_optout을 설정해 주세요'
                        '(예: "수신거부: 마이 > 설정 > 알림").')
        changes["text"] = f"{body.rstrip()}\n{sender.push_optout}" if body.strip() else sender.push_optout
    return message.model_copy(update=changes)


def _sms(message: BaseModel, sender: SenderSettings) -> BaseModel | Decision:
    if not sender.optout_080:
        return skip(RULE, "no_optout_080",
                    "Advertising text messages end with the workspace's free 080 opt-out number: set [sender] "
                    "optout_080 (`nudge sender set --optout-080`).",
                    "광고 문자에는 무료 수신거부 080 번호가 필요합니다. [sender] optout_080을 설정해 주세요.")
    body, subject = text_message(sms.normalised(message.text), message.subject, sender)  # type: ignore[attr-defined]
    return message.model_copy(update={"text": body, "subject": subject})


REWRITE = {MessageChannel.SMS: _sms, MessageChannel.EMAIL: _email, MessageChannel.PUSH: _push}


def decide(candidate: Candidate, person: Person, now: datetime, state: State) -> Decision:
    if not candidate.advertising:
        return send(RULE, "informational", "Informational: no advertising label.", "정보성: 광고 표기가 없습니다.")
    own = None
    if candidate.channel == MessageChannel.EMAIL and not getattr(candidate.message, "unsubscribe_url", None):
        own = state.unsubscribe_link(person.profile_id)
    key = (RULE, candidate.channel, id(candidate.message), own)
    kept = state.memo.get(key)
    if kept is not None and kept[0] is candidate.message:  # the same message for everyone in a batch
        return kept[1]
    decision = _decide(candidate, own, state)
    state.memo[key] = (candidate.message, decision)
    return decision


def _decide(candidate: Candidate, own: str | None, state: State) -> Decision:
    found = look_alikes(candidate.message)
    if found:
        where, what = found[0]
        return skip(RULE, "label_look_alike",
                    f'{where} has "{what}", which is not the exact label "(광고)": the law accepts only "(광고)" '
                    "(variants count as evading it). Write it exactly, or remove it and it is added for you.",
                    f'{where}에 "{what}"이(가) 있습니다. 광고 표기는 정확히 "(광고)"여야 합니다(변형 표기는 법 위반). '
                    "정확히 쓰거나 지우면 자동으로 붙여 드립니다.")
    rewrite = REWRITE.get(candidate.channel)
    if rewrite is None:
        return send(RULE, "channel_labels", "Kakao labels advertising itself; in-app messages are shown, not sent.",
                    "카카오는 광고 표기를 직접 붙이고, 인앱 메시지는 전송이 아닌 앱 안 표시입니다.")
    message = candidate.message
    if own:
        message = message.model_copy(update={"unsubscribe_url": own})
    rewritten = rewrite(message, state.settings.sender)
    if isinstance(rewritten, Decision):
        return rewritten
    checked = state.check(candidate.channel, rewritten)
    if not checked.ok:
        first = checked.problems[0]
        return skip(RULE, "refused_after_label", f"With the label and opt-out line added: {first.en}",
                    f"광고 표기와 수신거부 안내를 붙이면: {first.ko}")
    if rewritten == candidate.message:
        return send(RULE, "labelled", "Has the (광고) label and the opt-out line.",
                    "(광고) 표기와 수신거부 안내가 있습니다.", message=rewritten, checked=checked)
    grew = f" (now {checked.type})" if checked.type and checked.type != candidate.checked.type else ""
    return send(RULE, "label_added", f"Added what was missing of the (광고) label and the opt-out line{grew}.",
                f"(광고) 표기와 수신거부 안내 중 빠진 것을 붙였습니다{grew}.", message=rewritten, checked=checked)

