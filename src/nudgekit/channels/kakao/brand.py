"""A Kakao Brand Message (브랜드 메시지): advertising on KakaoTalk, the successor of FriendTalk
(CHANNEL_RULES B).

Kakao's rules, checked before any provider call: text up to 1,300 characters (400 with an image, 76 with a
wide image); JPEG or PNG images up to 5 MB; at most five buttons (two on a wide image); sent only between
08:00 and 20:50 Korean time; reaching people who are not friends of the channel (targeting M or N) only
when Kakao has qualified the workspace's channel and a free 080 opt-out number is registered; and at most
one Brand Message per recipient per Korean calendar day.

:TRICKY: the one-a-day rule is enforced by claiming (recipient, day) in the state DB before the provider
call; a send that certainly did not go out gives the day back, an uncertain one keeps it.
"""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nudgekit.channels.check import Checked, Size
from nudgekit.channels.kakao import fallback as kakao_fallback
from nudgekit.channels.kakao.buttons import KakaoButton, check_buttons
from nudgekit.channels.kakao.profile import require_channel
from nudgekit.channels.numbers import spelled
from nudgekit.config import PriceSettings, SenderSettings
from nudgekit.store.state import BrandMessageDay
from nudgekit.vocabulary import BrandFormat, MessageChannel, Targeting

KOREA = ZoneInfo("Asia/Seoul")
OPENS, CLOSES = time(8, 0), time(20, 50)
TEXT_CHARS = {BrandFormat.TEXT: 1300, BrandFormat.IMAGE: 400, BrandFormat.WIDE: 76}
BUTTONS = {BrandFormat.TEXT: 5, BrandFormat.IMAGE: 5, BrandFormat.WIDE: 2}
IMAGE_BYTES = 5_000_000
IMAGE_MIN_WIDTH = 500
IMAGE_RATIO = {BrandFormat.IMAGE: (0.5, 4 / 3), BrandFormat.WIDE: (0.5, 1.0)}
"""Height over width: an image from 2:1 (wide) to 3:4 (tall), a wide image from 2:1 to square (NHN's and
Solapi's upload limits; 800x400 and 800x600 are the recommended sizes)."""


class BrandMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    format: BrandFormat = BrandFormat.TEXT
    image: Path | None = None
    """A JPEG or PNG file, for the image and wide formats."""
    image_link: str | None = None
    """The page a tap on the image opens."""
    buttons: list[KakaoButton] = Field(default_factory=list)
    targeting: Targeting = Targeting.I
    fallback: bool = True
    """Send an advertising text message instead when the recipient cannot be reached on Kakao."""
    fallback_text: str | None = None
    fallback_subject: str | None = None
    sender_number: str | None = None


def check(message: BrandMessage, sender: SenderSettings, prices: PriceSettings,
          now: datetime | None = None) -> Checked:
    """Every reason Kakao would refuse the message; `now`, when given, also checks the sending hours."""
    friends_only = message.targeting == Targeting.I
    price = prices.brand_message_friend if friends_only else prices.brand_message_nonfriend
    out = Checked(MessageChannel.BRAND_MESSAGE, message.format.value, price)
    require_channel(out, sender)
    _check_text(out, message)
    _check_image(out, message)
    check_buttons(out, message.buttons, BUTTONS[message.format])
    _check_targeting(out, message.targeting, sender)
    if now is not None and not in_hours(now):
        at = now.astimezone(KOREA).strftime("%H:%M")
        opens = next_opening(now).astimezone(KOREA).strftime("%m-%d %H:%M")
        out.problem("time", "outside_sending_hours",
                    f"Brand Messages go out only from 08:00 to 20:50 Korean time; it is {at} there. The next "
                    f"window opens {opens}.",
                    f"브랜드 메시지는 한국 시간 08:00~20:50에만 보낼 수 있습니다(지금 {at}). 다음 발송 가능 시각: {opens}.")
    if message.fallback:
        out.attach(kakao_fallback.compose(message.fallback_text or message.text, subject=message.fallback_subject,
                                          sender_number=message.sender_number, ad=True, buttons=message.buttons,
                                          sender=sender, prices=prices))
    return out


def _check_text(out: Checked, message: BrandMessage) -> None:
    text = message.text.strip()
    limit = TEXT_CHARS[message.format]
    out.sizes["text"] = Size(len(text), limit, "characters")
    if not text:
        out.problem("text", "empty", "The message has no text.", "메시지 내용이 비어 있습니다.")
    elif len(text) > limit:
        kind = {BrandFormat.TEXT: "", BrandFormat.IMAGE: " with an image", BrandFormat.WIDE: " with a wide image"}
        out.problem("text", "too_long",
                    f"The text is {len(text):,} characters; a Brand Message{kind[message.format]} holds at most "
                    f"{limit:,}.",
                    f"본문이 {len(text):,}자입니다. 이 형식의 브랜드 메시지는 최대 {limit:,}자까지 보낼 수 있습니다.")


def _check_image(out: Checked, message: BrandMessage) -> None:
    if message.format == BrandFormat.TEXT:
        if message.image is not None:
            out.problem("image", "image_needs_format", 'An image needs format "image" or "wide".',
                        '이미지를 넣으려면 형식을 "image" 또는 "wide"로 정해 주세요.')
        return
    if message.image is None:
        out.problem("image", "image_missing", f"A {message.format.value} Brand Message needs an image.",
                    "이미지형 브랜드 메시지에는 이미지가 있어야 합니다.")
        return
    path = message.image
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        out.problem("image", "image_too_big", f"{path.name} has far too many pixels for a Kakao image.",
                    f"{path.name}의 픽셀 수가 너무 많습니다.")
        return
    except OSError as exc:
        if isinstance(exc, UnidentifiedImageError):
            out.problem("image", "not_an_image", f"{path.name} is not an image file.",
                        f"{path.name}은(는) 이미지 파일이 아닙니다.")
        else:
            out.problem("image", "image_unreadable", f"Cannot read the image {path}: {exc.strerror or exc}.",
                        f"이미지 파일 {path}을(를) 읽을 수 없습니다.")
        return
    out.sizes["image"] = Size(len(data), IMAGE_BYTES, "bytes")
    if kind not in ("JPEG", "PNG"):
        out.problem("image", "image_format", f"{path.name} is {kind}; Kakao takes JPEG or PNG images.",
                    f"{path.name}은(는) {kind} 형식입니다. JPEG 또는 PNG 이미지만 보낼 수 있습니다.")
    if len(data) > IMAGE_BYTES:
        out.problem("image", "image_too_large", f"{path.name} is {len(data) / 1e6:.1f} MB; at most 5 MB.",
                    f"{path.name}은(는) {len(data) / 1e6:.1f}MB입니다. 최대 5MB까지 보낼 수 있습니다.")
    if width < IMAGE_MIN_WIDTH:
        out.problem("image", "image_too_narrow", f"{path.name} is {width} pixels wide; at least {IMAGE_MIN_WIDTH}.",
                    f"{path.name}의 가로가 {width}픽셀입니다. 최소 {IMAGE_MIN_WIDTH}픽셀이어야 합니다.")
    low, high = IMAGE_RATIO[message.format]
    if not low <= height / width <= high:
        shapes = "2:1 to 3:4" if message.format == BrandFormat.IMAGE else "2:1 to 1:1"
        out.problem("image", "image_ratio",
                    f"{path.name} is {width}x{height}; a {message.format.value} image takes shapes from {shapes} "
                    "(width:height).",
                    f"{path.name}은(는) {width}x{height}입니다. 가로:세로 {shapes.replace(' to ', ' ~ ')} 비율만 보낼 수 "
                    "있습니다.")


def _check_targeting(out: Checked, targeting: Targeting, sender: SenderSettings) -> None:
    if targeting == Targeting.I:
        return
    if targeting not in sender.kakao_targeting:
        out.problem("targeting", "targeting_not_allowed",
                    f"Targeting {targeting.value} reaches people who are not friends of the channel; Kakao allows it "
                    "only for qualified channels (50,000 friends, business verified, 080 number registered). Once "
                    f'Kakao has approved yours, add "{targeting.value}" to [sender] kakao_targeting.',
                    f"{targeting.value} 타게팅은 채널 친구가 아닌 사람에게도 보내며, 카카오 심사를 통과한 채널만 "
                    "쓸 수 있습니다(친구 5만 명, 사업자 인증, 080 번호 등록). 승인을 받았다면 [sender] kakao_targeting에 "
                    f'"{targeting.value}"를 추가하세요.')
    if sender.optout_080 is None:
        out.problem("sender", "no_optout_080",
                    "Brand Messages to non-friends carry the free 080 opt-out line: set [sender] optout_080.",
                    "채널 친구가 아닌 사람에게 보내는 브랜드 메시지에는 080 무료 수신거부 번호가 필요합니다. [sender] "
                    "optout_080을 설정해 주세요.")


def in_hours(now: datetime) -> bool:
    return OPENS <= now.astimezone(KOREA).time() < CLOSES


def next_opening(now: datetime) -> datetime:
    """The first moment at or after `now` when a Brand Message may go out."""
    local = now.astimezone(KOREA)
    if in_hours(now):
        return now
    day = local.date() if local.time() < OPENS else local.date() + timedelta(days=1)
    return datetime.combine(day, OPENS, KOREA)


def kakao_day(now: datetime) -> date:
    return now.astimezone(KOREA).date()


def claim_day(session: Session, recipient: str, message_id: str, now: datetime) -> tuple[str | None, bool]:
    """Take the recipient's Brand Message for today: (why not, when another message has it; whether this
    call took it). The same message claiming again is allowed but takes nothing, so only the call that
    took the day may give it back."""
    day = kakao_day(now)
    row = session.get(BrandMessageDay, (recipient, day))
    if row is not None:
        return (None if row.message_id == message_id else _taken(recipient, row)), False
    try:
        with session.begin_nested():
            session.add(BrandMessageDay(recipient=recipient, day=day, message_id=message_id, at=now))
    except IntegrityError:
        row = session.get(BrandMessageDay, (recipient, day))
        return (_taken(recipient, row) if row is not None and row.message_id != message_id else None), False
    return None, True


def release_day(session: Session, recipient: str, message_id: str, now: datetime) -> None:
    """Give the day back after a send that certainly did not go out."""
    session.execute(delete(BrandMessageDay).where(BrandMessageDay.recipient == recipient,
                                                  BrandMessageDay.day == kakao_day(now),
                                                  BrandMessageDay.message_id == message_id))


def _taken(recipient: str, row: BrandMessageDay) -> str:
    return (f"{spelled(recipient) if recipient.startswith('0') else recipient} already received a Brand Message "
            f"today ({row.day.isoformat()}, Korean time): Kakao allows one a day")
