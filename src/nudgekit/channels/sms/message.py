"""A text message (SMS / LMS / MMS): its model, its length as carriers count it, the type that length
chooses, and every reason a carrier or provider would refuse it (CHANNEL_RULES C).

:TRICKY: carriers count bytes in EUC-KR: ASCII is one byte, Hangul and other Korean-set characters two.
We count with CP949 (EUC-KR plus the 8,822 Hangul syllables KS X 1001 lacks, such as 똠 or 뷁), which Korean
providers accept; those extra syllables get a warning because some older phones show them as "?".
Characters outside CP949 (emoji, most other scripts) cannot be sent at all and are refused.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from nudgekit.channels.check import Checked, Size
from nudgekit.channels.numbers import digits_of, sender_number, spelled
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.vocabulary import MessageChannel, SmsType

SMS_BYTES = 90
LMS_BYTES = 2000
SUBJECT_BYTES = 40
MMS_IMAGES = 3
MMS_IMAGE_BYTES = 300_000
MMS_TOTAL_BYTES = 800_000
MMS_SIDE = 1000
"""MMS image limits: NHN Cloud's (JPEG only, at most 3, 300 KB each, 800 KB together, 1000x1000 px), the
strictest among our providers, so an image that passes here passes everywhere (CHANNEL_RULES C). A KB is
taken as 1,000 bytes, the stricter reading."""

AD_LABEL = "(광고)"
OPTOUT_LINE = re.compile(r"\[?무료\s*(?:수신\s*)?거부\]?\s*[:：]?\s*(080(?:[\- ]?\d){7,8})(?!\d)")
"""무료수신거부 080..., 무료거부 080... or NHN's own [무료 수신거부]080...: the word 무료 is required (providers
check this form), and the line comes last."""


class SmsMessage(BaseModel):
    """A text message as a marketer writes it."""

    model_config = ConfigDict(extra="forbid")

    text: str
    subject: str | None = None
    """LMS / MMS only; a subject makes the message an LMS."""
    images: list[Path] = Field(default_factory=list)
    """JPEG files; any image makes the message an MMS."""
    ad: bool = False
    """Advertising (광고성 정보): label and free opt-out line required."""
    sender_number: str | None = None
    """One of the registered sender numbers; default the first."""
    type: SmsType | None = None
    """Force a type; default chosen from the length, subject and images."""


@dataclass(frozen=True)
class CarrierText:
    bytes: int
    unsupported: list[str]
    """Characters no carrier can carry (counted as two bytes each)."""
    uncommon: list[str]
    """Hangul outside KS X 1001 that some phones show as '?'."""


def carrier_bytes(text: str) -> CarrierText:
    """The text's length in bytes as Korean carriers count it (see the module's :TRICKY:)."""
    try:
        size = len(text.encode("cp949"))
        unsupported: list[str] = []
    except UnicodeEncodeError:
        size, unsupported = 0, []
        for ch in text:
            try:
                size += len(ch.encode("cp949"))
            except UnicodeEncodeError:
                size += 2
                unsupported.append(ch)
    uncommon: list[str] = []
    if unsupported or len(text.encode("euc-kr")) != size:
        # Python's EUC-KR spells a syllable outside KS X 1001 as an 8-byte make-up sequence: that tells them apart
        uncommon = [ch for ch in dict.fromkeys(text) if ch not in unsupported
                    and len(ch.encode("euc-kr")) != len(ch.encode("cp949"))]
    return CarrierText(size, list(dict.fromkeys(unsupported)), uncommon)


def normalised(text: str) -> str:
    """Line breaks as one LF, as providers receive them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def choose_type(text_bytes: int, subject: str | None, images: list[Path]) -> SmsType:
    if images:
        return SmsType.MMS
    if subject or text_bytes > SMS_BYTES:
        return SmsType.LMS
    return SmsType.SMS


def check(message: SmsMessage, sender: SenderSettings, prices: PriceSettings) -> Checked:
    """Every reason the message would be refused, its type, sizes and price."""
    text = normalised(message.text)
    measured = carrier_bytes(text)
    subject = normalised(message.subject).strip() if message.subject else None
    kind = message.type or choose_type(measured.bytes, subject, message.images)
    price = {SmsType.SMS: prices.sms, SmsType.LMS: prices.lms, SmsType.MMS: prices.mms}[kind]
    out = Checked(MessageChannel.SMS, kind.value, price)
    limit = SMS_BYTES if kind == SmsType.SMS else LMS_BYTES
    out.sizes["text"] = Size(measured.bytes, limit, "bytes")
    _check_text(out, text, measured, kind, limit)
    if subject is not None:
        _check_subject(out, subject, kind)
    _check_images(out, message.images, kind)
    _check_sender(out, message.sender_number, sender)
    if message.ad:
        _check_ad(out, text, subject, kind, sender)
    return out


def _listed(chars: list[str]) -> str:
    return " ".join(repr(c) if c.isspace() else c for c in chars[:10]) + (" ..." if len(chars) > 10 else "")


def _check_text(out: Checked, text: str, measured: CarrierText, kind: SmsType, limit: int) -> None:
    if not text.strip():
        out.problem("text", "empty", "The message has no text.", "메시지 내용이 비어 있습니다.")
        return
    if measured.unsupported:
        chars = _listed(measured.unsupported)
        out.problem("text", "unsupported_characters",
                    f"Text messages cannot carry these characters (emoji and characters outside the Korean "
                    f"character set): {chars}. Remove or replace them.",
                    f"문자 메시지로 보낼 수 없는 문자가 있습니다(이모지, 한글 문자 집합 밖의 문자): {chars}. "
                    "지우거나 다른 문자로 바꿔 주세요.")
    if measured.uncommon:
        chars = _listed(measured.uncommon)
        out.warn("text", "uncommon_hangul",
                 f"Some older phones show these rarely used Hangul syllables as '?': {chars}.",
                 f"일부 오래된 휴대폰에서는 잘 쓰이지 않는 이 글자들이 '?'로 보일 수 있습니다: {chars}.")
    if measured.bytes > limit:
        over = measured.bytes - limit
        if kind == SmsType.SMS:
            out.problem("text", "too_long_for_sms",
                        f"The text is {measured.bytes} bytes; an SMS holds {SMS_BYTES} (Hangul counts 2 bytes). "
                        f"Shorten it by {over} bytes or send it as an LMS.",
                        f"본문이 {measured.bytes}바이트로 단문(SMS) 한도 {SMS_BYTES}바이트를 {over}바이트 넘습니다"
                        "(한글은 2바이트). 줄이거나 장문(LMS)으로 보내세요.")
        else:
            out.problem("text", "too_long",
                        f"The text is {measured.bytes} bytes; an {kind.value} holds {LMS_BYTES} (Hangul counts "
                        f"2 bytes, so about 1,000 Hangul characters). Shorten it by {over} bytes.",
                        f"본문이 {measured.bytes}바이트로 {kind.value} 한도 {LMS_BYTES}바이트(한글 약 1,000자)를 "
                        f"{over}바이트 넘습니다. 줄여 주세요.")


def _check_subject(out: Checked, subject: str, kind: SmsType) -> None:
    if kind == SmsType.SMS:
        out.problem("subject", "sms_has_no_subject", "An SMS has no subject: remove it or send an LMS.",
                    "단문(SMS)에는 제목을 넣을 수 없습니다. 제목을 빼거나 장문(LMS)으로 보내세요.")
        return
    measured = carrier_bytes(subject)
    out.sizes["subject"] = Size(measured.bytes, SUBJECT_BYTES, "bytes")
    if measured.unsupported:
        chars = _listed(measured.unsupported)
        out.problem("subject", "unsupported_characters",
                    f"The subject has characters text messages cannot carry: {chars}.",
                    f"제목에 문자 메시지로 보낼 수 없는 문자가 있습니다: {chars}.")
    if measured.bytes > SUBJECT_BYTES:
        out.problem("subject", "subject_too_long",
                    f"The subject is {measured.bytes} bytes; at most {SUBJECT_BYTES} (20 Hangul characters).",
                    f"제목이 {measured.bytes}바이트입니다. 최대 {SUBJECT_BYTES}바이트(한글 20자)까지 쓸 수 있습니다.")


def _check_images(out: Checked, images: list[Path], kind: SmsType) -> None:
    if kind != SmsType.MMS:
        if images:
            out.problem("images", "images_need_mms", f"Only an MMS carries images; this is an {kind.value}.",
                        f"이미지는 MMS로만 보낼 수 있습니다(지금은 {kind.value}).")
        return
    if not images:
        out.problem("images", "mms_without_image", "An MMS needs at least one JPEG image.",
                    "MMS에는 JPEG 이미지가 한 장 이상 있어야 합니다.")
        return
    if len(images) > MMS_IMAGES:
        out.problem("images", "too_many_images", f"An MMS carries at most {MMS_IMAGES} images, not {len(images)}.",
                    f"MMS 이미지는 최대 {MMS_IMAGES}장입니다({len(images)}장 첨부됨).")
    total = 0
    for i, path in enumerate(images, start=1):
        total += _check_image(out, f"images[{i}]", path)
    out.sizes["images"] = Size(total, MMS_TOTAL_BYTES, "bytes")
    if total > MMS_TOTAL_BYTES:
        out.problem("images", "images_too_large",
                    f"The images add up to {total // 1000} KB; an MMS carries at most {MMS_TOTAL_BYTES // 1000} KB.",
                    f"이미지 합계가 {total // 1000}KB입니다. MMS는 합계 {MMS_TOTAL_BYTES // 1000}KB까지 보낼 수 있습니다.")


def _check_image(out: Checked, where: str, path: Path) -> int:
    try:
        data = path.read_bytes()
    except OSError as exc:
        out.problem(where, "image_unreadable", f"Cannot read the image {path}: {exc.strerror or exc}.",
                    f"이미지 파일 {path}을(를) 읽을 수 없습니다.")
        return 0
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        out.problem(where, "image_too_big", f"{path.name} has far too many pixels; at most {MMS_SIDE}x{MMS_SIDE}.",
                    f"{path.name}의 픽셀 수가 너무 많습니다. 최대 {MMS_SIDE}x{MMS_SIDE} 픽셀까지입니다.")
        return len(data)
    except (UnidentifiedImageError, OSError):
        out.problem(where, "not_an_image", f"{path.name} is not an image file.",
                    f"{path.name}은(는) 이미지 파일이 아닙니다.")
        return len(data)
    if kind != "JPEG":
        out.problem(where, "image_not_jpeg", f"{path.name} is {kind}; an MMS carries JPEG images only.",
                    f"{path.name}은(는) {kind} 형식입니다. MMS에는 JPEG 이미지만 보낼 수 있습니다.")
    if len(data) > MMS_IMAGE_BYTES:
        out.problem(where, "image_too_large",
                    f"{path.name} is {len(data) / 1000:.0f} KB; each MMS image may be at most 300 KB.",
                    f"{path.name}은(는) {len(data) / 1000:.0f}KB입니다. MMS 이미지는 장당 300KB까지입니다.")
    if width > MMS_SIDE or height > MMS_SIDE:
        out.problem(where, "image_too_big",
                    f"{path.name} is {width}x{height} pixels; at most {MMS_SIDE}x{MMS_SIDE}.",
                    f"{path.name}은(는) {width}x{height} 픽셀입니다. 최대 {MMS_SIDE}x{MMS_SIDE} 픽셀까지입니다.")
    return len(data)


def _check_sender(out: Checked, wanted: str | None, sender: SenderSettings) -> None:
    if not sender.sms_numbers:
        out.problem("sender_number", "no_sender_number",
                    "No sender number is registered: add one under [sender] sms_numbers in nudge.toml "
                    "(or `nudge sender set --sms-number`) after registering it with your provider.",
                    "등록된 발신번호가 없습니다. 문자 서비스에 발신번호를 등록한 뒤 nudge.toml의 [sender] sms_numbers"
                    "(또는 `nudge sender set --sms-number`)에 적어 주세요.")
        return
    if wanted is None:
        return
    try:
        number = sender_number(wanted)
    except ValueError as exc:
        out.problem("sender_number", "bad_sender_number", str(exc), f"발신번호 형식이 올바르지 않습니다: {wanted}")
        return
    if number not in sender.sms_numbers:
        known = ", ".join(spelled(n) for n in sender.sms_numbers)
        out.problem("sender_number", "unregistered_sender_number",
                    f"{spelled(number)} is not a registered sender number (registered: {known}); carriers refuse "
                    "messages from unregistered numbers.",
                    f"{spelled(number)}은(는) 등록된 발신번호가 아닙니다(등록된 번호: {known}). 등록되지 않은 번호로는 "
                    "보낼 수 없습니다.")


def _check_ad(out: Checked, text: str, subject: str | None, kind: SmsType, sender: SenderSettings) -> None:
    """What the providers' advertising endpoints check: the label first, the free 080 opt-out line.

    :TRICKY: adding the label and line when missing, and refusing look-alike labels, is the policy chain's
    job (issue #5); here a message without them is refused as the provider would refuse it."""
    if text[:1].isspace() and text.lstrip().startswith(AD_LABEL):
        out.problem("text", "ad_label_not_first",
                    f'Advertising must start with "{AD_LABEL}" as its very first characters: remove the spaces or '
                    "blank lines before it.",
                    f'광고 메시지는 맨 앞이 "{AD_LABEL}"여야 합니다. 앞의 공백이나 빈 줄을 지워 주세요.')
    elif not text.startswith(AD_LABEL):
        out.problem("text", "ad_label_missing",
                    f'Advertising must start with "{AD_LABEL}" exactly (not [광고], (광 고) or similar).',
                    f'광고 메시지는 "{AD_LABEL}"로 정확히 시작해야 합니다([광고], (광 고) 등은 안 됩니다).')
    if kind != SmsType.SMS and subject and not subject.startswith(AD_LABEL):
        out.problem("subject", "ad_label_missing",
                    f'An advertising {kind.value} must start its subject with "{AD_LABEL}" too.',
                    f'광고 {kind.value}는 제목도 "{AD_LABEL}"로 시작해야 합니다.')
    lines = list(OPTOUT_LINE.finditer(text))
    found = lines[-1] if lines else None
    if sender.optout_080 is None:
        out.problem("sender", "no_optout_080",
                    "Advertising text messages need the workspace's free 080 opt-out number: set [sender] "
                    "optout_080 in nudge.toml (the number your provider issued).",
                    "광고 문자에는 무료 수신거부 080 번호가 필요합니다. 문자 서비스에서 받은 번호를 nudge.toml의 [sender] "
                    "optout_080에 적어 주세요.")
    if found is None:
        line = f"무료거부 {spelled(sender.optout_080)}" if sender.optout_080 else "무료거부 080-XXX-XXXX"
        out.problem("text", "optout_line_missing",
                    f'Advertising must end with a free opt-out line, e.g. "{line}".',
                    f'광고 메시지 끝에 무료 수신거부 안내가 있어야 합니다(예: "{line}").')
    elif text[found.end():].strip(" \t\r\n.)]"):
        out.problem("text", "optout_line_not_last",
                    f'The free opt-out line ("{found.group(0).strip()}") must be the end of the message: move what '
                    "follows it above it.",
                    f'무료 수신거부 안내("{found.group(0).strip()}")는 메시지 맨 끝에 있어야 합니다. 뒤에 있는 내용을 '
                    "위로 옮겨 주세요.")
    elif sender.optout_080 is not None and digits_of(found.group(1)) != sender.optout_080:
        out.problem("text", "optout_number_mismatch",
                    f"The opt-out line names {found.group(1).strip()}, not the workspace's 080 number "
                    f"{spelled(sender.optout_080)}.",
                    f"수신거부 안내의 번호({found.group(1).strip()})가 등록된 080 번호({spelled(sender.optout_080)})와 "
                    "다릅니다.")
