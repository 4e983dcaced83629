"""Untrusted JSON: every pathological input is refused with words naming the problem, never raised
as anything else; ordinary JSON parses as Python's json would."""

from __future__ import annotations

import json

import pytest

from flow45.strictjson import MAX_DEPTH, JSONRefused, depth, loads

REFUSED = [
    ("[" * 10_000 + "]" * 10_000, "nests 10000 levels deep, over 64"),
    ('{"a":' * 5_000 + "1" + "}" * 5_000, "nests 5000 levels deep"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nests {MAX_DEPTH + 1} levels deep"),
    ('{"output": {"rows": ' + "9" * 5_000 + "}}", "a number of 5000 characters"),
    ('{"x": 0.' + "1" * 5_000 + "}", "a number of 5002 characters"),
    ('{"x": NaN}', "NaN is not a JSON number"),
    ('{"x": Infinity}', "Infinity is not a JSON number"),
    ('{"x": -Infinity}', "-Infinity is not a JSON number"),
    ('{"x": 1e400}', "the number 1e400 overflows a double"),
    ('{"x": -1E+309}', "the number -1E+309 overflows a double"),
    ('{"a": 1, "a": 2}', "the key 'a' appears twice"),
    ('{"s": "\\ud800"}', "lone UTF-16 surrogate"),
    ('{"\\udfff": 1}', "lone UTF-16 surrogate"),
    ('["\\u0000"]', "U+0000"),
    ("{not json", "not JSON (Expecting property name"),
    ("", "not JSON"),
]


@pytest.mark.parametrize("text, words", REFUSED, ids=[words for _, words in REFUSED])
def test_pathological_json_is_refused_with_its_reason(text, words):
    with pytest.raises(JSONRefused) as refused:
        loads(text)
    assert words in refused.value.message
    assert refused.value.code == "invalid_message"


@pytest.mark.parametrize("text", [
    '{"type": "claim", "instance": 41, "token": "t", "worker": "w"}',
    '{"n": -9223372036854775808, "big": 1000000000000000000000000000000, "f": 1.5e300, "e": 2E-5}',
    '{"escaped": "\\\\ud800 is text, \\\\u0000 too", "pair": "\\ud83d\\ude00", "quote": "[[[\\"{{{"}',
    "[" * MAX_DEPTH + "]" * MAX_DEPTH,
    '"just a string"',
])
def test_ordinary_json_parses_as_the_standard_library_does(text):
    assert loads(text) == json.loads(text)


def test_brackets_inside_strings_do_not_count_as_depth():
    text = json.dumps({"s": "[" * 1000, "t": '\\"' + "{" * 500})
    assert depth(text) == 1
    assert loads(text)["s"] == "[" * 1000
