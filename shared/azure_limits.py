"""Azure Storage's limits, enforced by every backend (SQLite included) so the default hides none.

Tables (learn.microsoft.com, "Understanding the Table service data model"):

- table names ``^[A-Za-z][A-Za-z0-9]{2,62}$``, not ``tables``;
- ``PartitionKey`` and ``RowKey``: strings up to 1 KiB (counted here as UTF-16, 1,024 bytes),
  without ``/ \\ # ?`` or the control characters U+0000-U+001F and U+007F-U+009F;
- at most 252 custom properties (255 with the system ones), names C# identifiers of at most
  255 characters; a string property at most 64 KiB in UTF-16; an entity at most 1 MiB by the
  documented size formula (:func:`entity_size`).

Queues (learn.microsoft.com, "Put Message"): names 3-63 characters of lower-case letters,
digits and single hyphens, starting and ending with a letter or digit; message text at most
64 KiB; a visibility timeout from 0 s up to 7 days, and smaller than the message's time to
live (7 days by default).

The entity codec (:func:`to_properties`, :func:`from_properties`) is how a value that would
not fit is handled by design instead of failing at run time: a field that is a short scalar
becomes a property of its own (readable in Storage Explorer); every other field (nested
values, ``None``, long or control-character strings, names that are not identifiers) goes
into one JSON document split over properties ``_x0``, ``_x1``, … of at most 64 KiB each.
Only an entity past 1 MiB as a whole is refused, with :class:`EntityTooLarge`; what the
product stores is bounded well below that (docs/reliability.md, "Storage limits").
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

MAX_KEY_BYTES = 1024
MAX_PROPERTIES = 252
MAX_STRING_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_MESSAGE_BYTES = 64 * 1024
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600
MESSAGE_TTL_SECONDS = 7 * 24 * 3600

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,61}[a-z0-9]")
_FORBIDDEN_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_OVERFLOW = re.compile(r"_x[0-9]+")
_SYSTEM = frozenset({"PartitionKey", "RowKey", "Timestamp"})
_PLAIN_TEXT = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]*")
# Characters per overflow chunk: ASCII-only JSON, so 2 UTF-16 bytes per character.
_CHUNK_CHARS = MAX_STRING_BYTES // 2
_INT32 = range(-(2**31), 2**31)
# A 1 MiB entity has at most 16 chunks of 64 KiB: the other properties may be plain ones.
_MAX_PLAIN = MAX_PROPERTIES - MAX_ENTITY_BYTES // MAX_STRING_BYTES


class StorageLimitError(ValueError):
    """A name, key, entity or message that Azure Storage would refuse (HTTP 400 or 413)."""


class EntityTooLarge(StorageLimitError):
    pass


class MessageTooLarge(StorageLimitError):
    pass


def _utf16(text: str) -> int:
    if text.isascii():  # the common case, without encoding
        return 2 * len(text)
    return len(text.encode("utf-16-le", "surrogatepass"))


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name) or name.lower() == "tables":
        raise StorageLimitError(f"table name {name!r}: 3-63 letters and digits, starting with a letter")
    return name


def check_queue_name(name: str) -> str:
    if not _QUEUE_NAME.fullmatch(name):
        raise StorageLimitError(f"queue name {name!r}: 3-63 lower-case letters, digits and single hyphens")
    return name


def check_key(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise StorageLimitError(f"{what} must be a string, not {type(value).__name__}")
    if _FORBIDDEN_KEY.search(value):
        raise StorageLimitError(f"{what} {value[:80]!r} has a character Azure forbids in keys (/ \\ # ? or a control)")
    if _utf16(value) > MAX_KEY_BYTES:
        raise StorageLimitError(f"{what} is longer than 1 KiB")
    return value


@lru_cache(maxsize=4096)
def _plain_name(name: str) -> bool:
    return bool(_PROPERTY_NAME.fullmatch(name)) and name not in _SYSTEM and not _OVERFLOW.fullmatch(name)


def _plain(name: str, value: Any) -> bool:
    if not isinstance(name, str) or not _plain_name(name):
        return False
    if isinstance(value, bool | float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, int):
        return value in _INT32
    if isinstance(value, str):
        # isprintable() is False for controls and lone surrogates: the regex decides only then.
        return _utf16(value) <= MAX_STRING_BYTES and (value.isprintable() or _PLAIN_TEXT.fullmatch(value) is not None)
    return False


def to_properties(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the properties of one Azure entity (see the module doc)."""
    props: dict[str, Any] = {}
    for k, v in data.items():
        # Past _MAX_PLAIN, fields go to the overflow document, so the chunks always have room.
        if len(props) < _MAX_PLAIN and _plain(k, v):
            props[k] = v
    rest = {k: v for k, v in data.items() if k not in props}
    if rest:
        text = json.dumps(rest, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        for i in range(0, len(text), _CHUNK_CHARS):
            props[f"_x{i // _CHUNK_CHARS}"] = text[i:i + _CHUNK_CHARS]
    if len(props) > MAX_PROPERTIES:
        raise EntityTooLarge(f"the entity has {len(props)} properties; Azure allows {MAX_PROPERTIES}")
    return props


def from_properties(props: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_properties` (system properties and metadata are dropped)."""
    chunks = sorted((int(k[2:]), v) for k, v in props.items() if _OVERFLOW.fullmatch(k))
    data = {k: v for k, v in props.items() if k not in _SYSTEM and not _OVERFLOW.fullmatch(k)}
    if chunks:
        data.update(json.loads("".join(v for _, v in chunks)))
    return data


def _value_size(value: Any) -> int:
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 4 if isinstance(value, int) else 8
    return 4 + _utf16(value)


def entity_size(partition_key: str, row_key: str, props: dict[str, Any]) -> int:
    """Azure's documented entity size: 4 + 2·len(PartitionKey + RowKey) + Σ (8 + 2·len(name) + value)."""
    return 4 + _utf16(partition_key) + _utf16(row_key) + sum(8 + _utf16(k) + _value_size(v) for k, v in props.items())


def encode_entity(partition_key: str, row_key: str, data: dict[str, Any]) -> dict[str, Any]:
    """Check the keys, encode ``data`` and check the entity's size: what every backend stores."""
    check_key("PartitionKey", partition_key)
    check_key("RowKey", row_key)
    try:
        props = to_properties(data)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, StorageLimitError):
            raise
        raise StorageLimitError(f"entity {partition_key}/{row_key} holds a value JSON cannot carry: {exc}") from exc
    size = entity_size(partition_key, row_key, props)
    if size > MAX_ENTITY_BYTES:
        raise EntityTooLarge(f"entity {partition_key}/{row_key} is {size} bytes; Azure allows {MAX_ENTITY_BYTES}")
    return props


def check_message(content: str) -> str:
    if not isinstance(content, str):
        raise StorageLimitError(f"message text must be a string, not {type(content).__name__}")
    size = len(content.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"the message is {size} bytes; Azure allows {MAX_MESSAGE_BYTES}")
    return content


def check_visibility(seconds: float, what: str = "visibility timeout") -> float:
    if not 0 <= seconds <= MAX_VISIBILITY_SECONDS:
        raise StorageLimitError(f"{what} {seconds} s is outside 0 s .. 7 days")
    return seconds
