"""The app's JSON provider: Flask's output, with encoders reused (siwa_web/json_provider.py)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid

import pytest
from flask import Flask
from flask import jsonify
from flask.json.provider import DefaultJSONProvider

from siwa_web.infra.json_provider import ReusedEncoderJSONProvider


@dataclasses.dataclass
class Point:
    x: int
    y: int


VALUES = [
    {"b": 1, "a": [1, 2.5, None, True], "c": {"z": "é", "y": "\u2028<script>"}},
    {"when": dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC), "day": dt.date(2026, 1, 2)},
    {"id": uuid.UUID(int=7), "amount": decimal.Decimal("1.10"), "point": Point(1, 2)},
    ["a", "\x00", "\ud83d\ude00"],
    "plain",
    42,
]


@pytest.fixture
def apps():
    """The same settings with Flask's provider and with ours."""
    theirs, ours = Flask("theirs"), Flask("ours")
    ours.json = ReusedEncoderJSONProvider(ours)
    return theirs, ours


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("kwargs", [{}, {"separators": (",", ":")}, {"indent": 2},
                                    {"sort_keys": False}])
def test_output_is_flasks(apps, value, kwargs):
    theirs, ours = apps
    assert ours.json.dumps(value, **kwargs) == theirs.json.dumps(value, **kwargs)


@pytest.mark.parametrize("value", VALUES)
def test_jsonify_is_flasks(apps, value):
    theirs, ours = apps
    with theirs.app_context():
        expected = jsonify(value).get_data()
    with ours.app_context():
        assert jsonify(value).get_data() == expected


def test_one_encoder_per_kind_of_call(apps):
    _, ours = apps
    for _ in range(3):
        ours.json.dumps({"a": 1})
        ours.json.dumps({"a": 1}, separators=(",", ":"))
    assert len(ours.json._encoders) == 2


@pytest.mark.parametrize("kwargs", [{"cls": None}, {"separators": [",", ":"]}])
def test_other_arguments_take_flasks_way(apps, kwargs):
    theirs, ours = apps
    assert ours.json.dumps({"a": 1}, **kwargs) == theirs.json.dumps({"a": 1}, **kwargs)
    assert ours.json._encoders == {}


def test_unserialisable_values_still_raise(apps):
    _, ours = apps
    with pytest.raises(TypeError):
        ours.json.dumps({"a": object()})


def test_the_app_uses_it(app):
    assert isinstance(app.json, ReusedEncoderJSONProvider)
    assert isinstance(app.json, DefaultJSONProvider)  # everything else is Flask's
