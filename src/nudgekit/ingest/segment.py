"""Segment messages (identify, track, page, screen, alias, group) to the rows every door shares.

Follows the Segment Spec's common fields: userId / anonymousId, messageId,
timestamp / originalTimestamp / sentAt (clock-skew corrected like Segment:
timestamp = receivedAt - (sentAt - originalTimestamp)), context, and the
per-type fields (event, name, traits, properties, previousId, groupId).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from nudgekit.ingest.validate import Reject
from nudgekit.vocabulary import MessageType

SPEC_KEYS = {
    "type", "userId", "anonymousId", "messageId", "timestamp", "originalTimestamp", "sentAt",
    "receivedAt", "context", "integrations", "event", "name", "category", "properties", "traits",
    "previousId", "groupId", "channel", "version", "writeKey", "_metadata", "options",
}
ID_FIELDS = ("userId", "anonymousId", "previousId", "groupId", "messageId")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value if isinstance(value, str) else str(value)


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


def identify_traits(message: dict[str, Any]) -> Any:
    """An identify's traits. RudderStack's libraries send them in context.traits; Segment's at the top."""
    traits = message.get("traits")
    context = message.get("context")
    nested = context.get("traits") if isinstance(context, dict) else None
    if isinstance(nested, dict) and nested:
        return {**nested, **traits} if isinstance(traits, dict) else (nested if traits is None else traits)
    return traits


def to_raw(
    index: int,
    message: Any,
    *,
    default_type: str | None,
    sent_at: Any = None,
    fold_extra: bool = False,
) -> dict[str, Any] | Reject:
    """One message as a RAW_SCHEMA row, or a Reject for what the shared rules cannot see."""
    if not isinstance(message, dict):
        return Reject(index, "message", "each message must be a JSON object")
    for key in ID_FIELDS:
        value = message.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            return Reject(index, key, f"{key} must be a string")
    try:
        encoded = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS, default=str)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        return Reject(index, "message", "the message is nested more than 250 levels deep or holds values that "
                                        "are not JSON; flatten it")
    if b"\\u0000" in encoded:
        return Reject(index, "message", "the message contains a NUL character (\\u0000), which cannot be stored")
    kind = message.get("type") or default_type
    if default_type and message.get("type") and message["type"] != default_type:
        return Reject(index, "type", f'"{message["type"]}" sent to the /v1/{default_type} endpoint')
    context = message.get("context")
    if context is not None and not isinstance(context, dict):
        return Reject(index, "context", "context must be a JSON object")
    if kind in (MessageType.IDENTIFY, MessageType.GROUP):
        traits = identify_traits(message) if kind == MessageType.IDENTIFY else message.get("traits")
        if traits is not None and not isinstance(traits, dict):
            return Reject(index, "traits", 'traits must be a JSON object like {"name": "김민지"}')
        properties: Any = traits or {}
        if kind == MessageType.GROUP:
            properties = {"groupId": _text(message.get("groupId")), "traits": traits or {}}
    else:
        properties = message.get("properties")
        if kind in (MessageType.PAGE, MessageType.SCREEN) and message.get("category") is not None:
            properties = {**(properties if isinstance(properties, dict) else {}), "category": message["category"]}
    if fold_extra:
        extra = {k: v for k, v in message.items() if k not in SPEC_KEYS}
        if extra:
            properties = {**extra, **(properties if isinstance(properties, dict) else {})}
    event = message.get("event") if kind == MessageType.TRACK else message.get("name")
    return {
        "_row": index,
        "message_id": _text(message.get("messageId")),
        "type": _text(kind),
        "event": _text(event),
        "user_id": _text(message.get("userId")),
        "anonymous_id": _text(message.get("anonymousId")),
        "previous_id": _text(message.get("previousId")),
        "timestamp": _text(message.get("timestamp")),
        "original_timestamp": _text(message.get("originalTimestamp")),
        "sent_at": _text(message.get("sentAt") or sent_at),
        "properties": _json(properties),
        "context": _json(context),
        "_size": len(encoded),
    }
