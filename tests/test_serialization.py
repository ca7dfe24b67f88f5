"""Arguments are JSON only: supported types come back exactly; others are refused with a path."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext_lazy

from django_durable_jobs import InvalidJobArguments, PayloadTooLarge, serialization
from django_durable_jobs.models import Job
from django_durable_jobs.serialization import (
    DecodeError,
    decode,
    encode,
    encode_payload,
    load_payload,
)
from tests.testapp.jobs import echo
from tests.testapp.models import Note

PARIS = ZoneInfo("Europe/Paris")

ROUND_TRIP = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    "text with ünïcödé and emoji 🎉",
    [1, [2, [3]]],
    {"nested": {"list": [1, "a", None]}},
    dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC),
    dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=PARIS),
    dt.datetime(2026, 1, 2, 3, 4, 5, 678901),
    dt.date(2026, 2, 28),
    dt.time(23, 59, 59, 999999),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    decimal.Decimal("12345678901234567890.000000001"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    (1, "two", (3.0,)),
    {"__ddj__": "a user key that looks like our tag", "v": 1},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_round_trip_in_memory(value):
    decoded = decode(json.loads(json.dumps(encode(value, "args[0]"))))
    assert decoded == value
    assert type(decoded) is type(value)


def test_zoneinfo_datetime_keeps_its_zone():
    value = dt.datetime(2026, 7, 1, 12, tzinfo=PARIS)
    decoded = decode(encode(value, "x"))
    assert decoded.tzinfo == PARIS
    assert decoded.utcoffset() == dt.timedelta(hours=2)


@pytest.mark.django_db
def test_round_trip_through_the_database():
    handle = echo.enqueue(*ROUND_TRIP, key=ROUND_TRIP)
    row = Job.objects.get(id=handle.id)
    args, kwargs = load_payload(row.args, row.kwargs)
    assert args == ROUND_TRIP
    assert [type(a) for a in args] == [type(v) for v in ROUND_TRIP]
    assert kwargs == {"key": ROUND_TRIP}


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_round_trip_through_stored_text(value):
    """Workers read the stored JSON as text (or bytes): tagged values in it come back typed."""
    args_json, kwargs_json = encode_payload([value], {"k": value}, 0)
    for args_text, kwargs_text in [
        (args_json, kwargs_json),
        (args_json.encode(), kwargs_json.encode()),
    ]:
        args, kwargs = load_payload(args_text, kwargs_text)
        assert args == [value]
        assert type(args[0]) is type(value)
        assert kwargs == {"k": value}
        assert type(kwargs["k"]) is type(value)


def test_stored_text_without_tags_is_parsed_once(monkeypatch):
    """Large plain arguments are not walked (copied) by decode() after json.loads."""

    def walk(value):
        raise AssertionError("decode() walked text that holds no tag")

    items = [{"id": i, "name": f"item {i}", "price": i * 0.5} for i in range(1000)]
    args_json, kwargs_json = encode_payload([1, "two"], {"items": items}, 0)
    monkeypatch.setattr(serialization, "decode", walk)
    assert load_payload(args_json, kwargs_json) == ([1, "two"], {"items": items})
    assert load_payload(args_json.encode(), kwargs_json.encode()) == ([1, "two"], {"items": items})


@pytest.mark.django_db
def test_round_trip_of_the_stored_text_on_the_database():
    """The text the database gives back (jsonb's own output on PostgreSQL) decodes the same."""
    from django.db import connection

    handle = echo.enqueue(*ROUND_TRIP, key=ROUND_TRIP, plain=[{"a": 1}])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT args, kwargs FROM django_durable_jobs_job WHERE id = %s", [handle.id]
        )
        stored_args, stored_kwargs = cursor.fetchone()
    args, kwargs = load_payload(stored_args, stored_kwargs)
    assert args == ROUND_TRIP
    assert [type(a) for a in args] == [type(v) for v in ROUND_TRIP]
    assert kwargs == {"key": ROUND_TRIP, "plain": [{"a": 1}]}


class Color(enum.IntEnum):
    RED = 1


REFUSED = [
    ({"user": "MODEL"}, "kwargs['user']", "primary key"),
    ({"tags": {1, 2}}, "kwargs['tags']", "list"),
    ({"blob": b"\x00\x01"}, "kwargs['blob']", "base64"),
    ({"ratio": float("nan")}, "kwargs['ratio']", "finite"),
    ({"ratio": float("inf")}, "kwargs['ratio']", "finite"),
    ({"callback": lambda: 1}, "kwargs['callback']", "name or dotted path"),
    ({"text": "a\x00b"}, "kwargs['text']", "NUL"),
    ({"text": "lone \ud800 surrogate"}, "kwargs['text']", "Unicode"),
    ({"deep": {"list": [1, {"x": object()}]}}, "kwargs['deep']['list'][1]['x']", "JSON"),
    ({"mapping": {1: "a"}}, "kwargs['mapping']", "must be str"),
    ({"mapping": {"k\x00": "a"}}, "kwargs['mapping'] key", "NUL"),
    ({"label": gettext_lazy("Hello")}, "kwargs['label']", "str()"),
    ({"color": Color.RED}, "kwargs['color']", ".value"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("kwargs", "path", "fix"), REFUSED, ids=lambda v: str(v)[:30])
def test_refused_argument_names_path_and_fix_and_writes_nothing(kwargs, path, fix):
    if kwargs.get("user") == "MODEL":
        kwargs = {"user": User(username="x")}
    with pytest.raises(InvalidJobArguments) as info:
        echo.enqueue(**kwargs)
    assert path in str(info.value)
    assert fix in str(info.value)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_refused_positional_argument_path():
    with pytest.raises(InvalidJobArguments, match=r"args\[1\]"):
        echo.enqueue(1, {1, 2})


@pytest.mark.django_db(transaction=True)
def test_refusal_inside_a_transaction_leaves_it_usable():
    with transaction.atomic():
        Note.objects.create(text="before")
        with pytest.raises(InvalidJobArguments):
            echo.enqueue(b"bytes")
        Note.objects.create(text="after")  # the transaction still works
        echo.enqueue("fine")
    assert list(Note.objects.values_list("text", flat=True).order_by("id")) == ["before", "after"]
    assert Job.objects.count() == 1


def test_payload_limit_names_size_and_limit():
    with pytest.raises(PayloadTooLarge) as info:
        encode_payload(["x" * 2000], {}, max_bytes=1000)
    message = str(info.value)
    assert "2,006 bytes" in message
    assert "1,000" in message
    assert "MAX_PAYLOAD_BYTES" in message


@pytest.mark.django_db
def test_payload_limit_setting_is_enforced_at_enqueue(settings):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "MAX_PAYLOAD_BYTES": 100}
    with pytest.raises(PayloadTooLarge):
        echo.enqueue("y" * 200)
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ("not json", "{}", "not valid JSON"),
        ("{}", "{}", "wrong shape"),
        ("[]", "[]", "wrong shape"),
        ('[{"__ddj__": "martian", "v": 1}]', "{}", "unknown type tag"),
        ('[{"__ddj__": "date", "v": "not a date"}]', "{}", "bad tagged value"),
    ],
)
def test_corrupted_payloads_raise_decode_errors(args, kwargs, problem):
    with pytest.raises(DecodeError, match=problem):
        load_payload(args, kwargs)
