"""JSON-only argument and result encoding, with explicit tags for a few Python types.

Never pickle: a job row must be readable by any process, safe to show in the
admin, and impossible to turn into code execution. Plain JSON values pass
through; ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``
and ``tuple`` become ``{"__ddj__": <type>, "v": <value>}`` so that a job gets
back exactly what it was given. Everything else is refused at enqueue, with the
path of the offending value and the fix, before anything is written.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import Model
from django.utils.functional import Promise

from .exceptions import InvalidJobArguments, PayloadTooLarge

TAG = "__ddj__"


class DecodeError(ValueError):
    """A stored payload is not valid JSON or has a tag we do not know."""


def _hint(value: object) -> str:
    """The fix to suggest for a value we cannot store."""
    if isinstance(value, Model):
        return "pass its primary key (obj.pk) and fetch the object inside the job"
    if isinstance(value, set | frozenset):
        return "pass a list instead (sorted(...) if order matters)"
    if isinstance(value, bytes | bytearray | memoryview):
        return "pass text (for example base64-encoded) or a reference to where the data is stored"
    if isinstance(value, Promise):
        return "call str() on the lazy string (it is translated in the language active at enqueue)"
    if callable(value):
        return "pass the name or dotted path of what to call, and look it up inside the job"
    return "pass JSON-compatible values (str, int, float, bool, None, list, dict with str keys)"


def _check_str(value: str, path: str) -> None:
    if "\x00" in value:
        raise InvalidJobArguments(
            f"{path} contains a NUL character (\\x00), which the database cannot store; "
            "remove it or pass the data in another encoding (for example base64)."
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJobArguments(
                f"{path} is not valid Unicode text ({exc.reason} at index {exc.start}); "
                "pass well-formed text."
            ) from None


def _encode_datetime(value: dt.datetime) -> dict[str, Any]:
    tagged: dict[str, Any] = {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value.tzinfo, ZoneInfo):
        tagged["tz"] = value.tzinfo.key
    return tagged


def _encode_special(value: Any, path: str) -> Any:
    """Tag one of the supported non-JSON types, or refuse the value."""
    if isinstance(value, dt.datetime):
        return _encode_datetime(value)
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    raise InvalidJobArguments(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, "
        f"which cannot be stored as JSON: {_hint(value)}."
    )


def encode(value: Any, path: str) -> Any:
    """Return a JSON-ready copy of ``value``; raise ``InvalidJobArguments`` naming ``path``."""
    kind = type(value)
    if kind is str:
        _check_str(value, path)
        return value
    if value is None or kind is bool or kind is int:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise InvalidJobArguments(
                f"{path} is {value!r}, which JSON cannot represent; pass None or a finite number."
            )
        negative_zero = value == 0.0 and math.copysign(1.0, value) < 0.0
        if negative_zero or (abs(value) >= 1e16 and value.is_integer()):
            # PostgreSQL's jsonb keeps numbers as decimals: 1e+16 would come back as
            # the int 10000000000000000, -0.0 as 0.0. Written as text, they stay floats.
            return {TAG: "float", "v": repr(value)}
        return value
    if kind is list:
        return [encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind is dict:
        encoded: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidJobArguments(
                    f"{path} has the key {key!r} of type {type(key).__name__}; JSON object keys "
                    "must be str. Convert the keys to str, or pass a list of pairs."
                )
            _check_str(key, f"{path} key {key!r}")
            encoded[key] = encode(item, f"{path}[{key!r}]")
        if TAG in encoded:
            return {TAG: "dict", "v": encoded}
        return encoded
    if kind is tuple:
        return {TAG: "tuple", "v": [encode(item, f"{path}[{i}]") for i, item in enumerate(value)]}
    # Subclasses of the JSON types (SafeString, IntEnum...) would come back as the
    # base type; accept str subclasses, which are common (marked-safe HTML), as str.
    if isinstance(value, str) and not isinstance(value, Promise):
        return encode(str(value), path)
    if isinstance(value, bool | int | float | list | dict | tuple):
        raise InvalidJobArguments(
            f"{path} is a {kind.__qualname__} (a subclass of {kind.__mro__[1].__name__}), which "
            "would come back as a different type; pass a plain value (for an enum, its .value)."
        )
    return _encode_special(value, path)


def _decode_tagged(value: dict[str, Any]) -> Any:
    tag = value[TAG]
    raw: Any = value.get("v")
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise DecodeError(f"unknown type tag {tag!r}")
    if tag == "datetime" and "tz" in value:
        return dt.datetime.fromisoformat(raw).astimezone(ZoneInfo(value["tz"]))
    return decoder(raw)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": decimal.Decimal,
    "float": float,
    "uuid": uuid.UUID,
    "tuple": lambda v: tuple(decode(item) for item in v),
    "dict": lambda v: {key: decode(item) for key, item in v.items()},
}


def decode(value: Any) -> Any:
    """Inverse of ``encode``."""
    kind = type(value)
    if kind is list:
        return [decode(item) for item in value]
    if kind is dict:
        if TAG in value:
            try:
                return _decode_tagged(value)
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise DecodeError(f"bad tagged value {value!r}: {exc}") from exc
        return {key: decode(item) for key, item in value.items()}
    return value


# Built once: json.dumps() would build an encoder per call (enqueue calls it per job).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ENCODE_SORTED = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=True
).encode


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text of an already-encoded value."""
    return _ENCODE_SORTED(value) if sort_keys else _ENCODE(value)


def encode_payload(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], max_bytes: int):
    """Encode job arguments; return ``(args_json, kwargs_json)`` or raise before any write."""
    try:
        encoded_args = [encode(value, f"args[{i}]") for i, value in enumerate(args)]
        if kwargs:
            encoded_kwargs = {}
            for key, value in kwargs.items():
                _check_str(key, f"kwargs key {key!r}")
                encoded_kwargs[key] = encode(value, f"kwargs[{key!r}]")
            kwargs_json = _ENCODE(encoded_kwargs)
        else:
            kwargs_json = "{}"
        args_json = _ENCODE(encoded_args)
    except RecursionError:
        raise InvalidJobArguments(
            "The job's arguments are nested too deeply to store (lists or dicts inside each "
            "other hundreds of levels deep, or a structure that contains itself). Flatten them, "
            "or store the data elsewhere and pass a reference."
        ) from None
    # UTF-8 takes at most 4 bytes per character: count bytes only near the limit.
    size = len(args_json) + len(kwargs_json)
    if max_bytes and size * 4 > max_bytes:
        size = len(args_json.encode()) + len(kwargs_json.encode())
    if max_bytes and size > max_bytes:
        raise PayloadTooLarge(
            f"The job's arguments are {size:,} bytes as JSON, over the limit of {max_bytes:,} "
            'bytes (DURABLE_JOBS["MAX_PAYLOAD_BYTES"]). Store large data elsewhere (a model, '
            "a file) and pass a reference, or raise the limit."
        )
    return args_json, kwargs_json


#: How a tag's key appears in stored JSON text: our encoder, PostgreSQL's jsonb and
#: MySQL's JSON output all write object keys' underscores and letters unescaped.
_TAG_TEXT = f'"{TAG}"'


def _parse(stored: Any) -> tuple[Any, bool]:
    """Stored JSON parsed, and whether it may hold tagged values (parsed already: maybe)."""
    if isinstance(stored, str):
        if stored in ("[]", "{}"):  # most jobs take no args or no kwargs: no parser
            return ([] if stored == "[]" else {}), False
        return json.loads(stored), _TAG_TEXT in stored
    if isinstance(stored, bytes):
        return json.loads(stored), _TAG_TEXT.encode() in stored
    return stored, True


def load_payload(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """Decode stored arguments (JSON text or already-parsed values); raise ``DecodeError``.

    Text with no tag in it comes back as parsed, without ``decode``'s walk (a copy of
    every list and dict, which for large arguments costs as much as the parse).
    """
    try:
        args, args_tagged = _parse(args)
        kwargs, kwargs_tagged = _parse(kwargs)
    except ValueError as exc:
        raise DecodeError(f"stored arguments are not valid JSON: {exc}") from exc
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise DecodeError(
            "stored arguments have the wrong shape: expected a JSON list of args and a JSON "
            f"object of kwargs, got {type(args).__name__} and {type(kwargs).__name__}"
        )
    return (
        decode(args) if args_tagged else args,
        decode(kwargs) if kwargs_tagged else kwargs,
    )
