"""A `when` is judged on whatever inputs a task would receive: any JSON an upstream stored, or null
for a skipped one. It never raises, and it says which condition failed with what value."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from flow45.conditions import When, unmet

WHEN = TypeAdapter(When)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                           st.dictionaries(st.sampled_from("abc"), kids, max_size=3)),
                           max_leaves=10)
expected = st.one_of(scalars, st.lists(scalars, min_size=1, max_size=4),
                     st.dictionaries(st.sampled_from(["gt", "ge", "lt", "le"]),
                                     st.one_of(st.integers(-100, 100), st.text(max_size=4)), min_size=1),
                     st.fixed_dictionaries({"ne": scalars}))
paths = st.lists(st.sampled_from("abc"), min_size=1, max_size=3).map(lambda fields: "x." + ".".join(fields))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(paths, expected, max_size=3), json_values)
def test_any_inputs_are_judged_without_an_error(conditions, value):
    when = WHEN.validate_python(conditions)
    why = unmet(when, {"x": value})
    assert why is None or (why.startswith("when x.") and ": it is " in why)


@pytest.mark.parametrize("conditions, inputs, why", [
    ({"x.n": 1}, {"x": {"n": True}}, "when x.n is 1: it is true"),  # true is not 1
    ({"x.n": 2}, {"x": {"n": 2.0}}, None),  # 2 is 2.0
    ({"x.n": {"gt": 1, "le": 3}}, {"x": {"n": 3}}, None),
    ({"x.n": {"gt": 1, "le": 3}}, {"x": {"n": 4}}, "when x.n > 1 and <= 3: it is 4"),
    ({"x.n": {"gt": 1}}, {"x": {"n": "5"}}, 'when x.n > 1: it is "5"'),  # a text is neither above nor below a number
    ({"x.n": {"ne": None}}, {"x": None}, "when x.n != null: it is null"),
    ({"x.d": {"ge": "2028-02-29"}}, {"x": {"d": "2028-03-01"}}, None),
    ({"x.a.b": [1, 2]}, {"x": {"a": [1, 2]}}, "when x.a.b is one of 1, 2: it is null"),  # no field inside a list
    # Times compare as the instants they name: the offset written, and a fraction the store leaves out when zero.
    ({"x.t": {"ge": "2028-02-29T10:00:00+01:00"}}, {"x": {"t": "2028-02-29T09:30:00Z"}}, None),
    ({"x.t": {"lt": "2028-02-29T10:00:00+01:00"}}, {"x": {"t": "2028-02-29T09:30:00Z"}},
     'when x.t < "2028-02-29T10:00:00+01:00": it is "2028-02-29T09:30:00Z"'),
    ({"x.t": {"gt": "2028-02-29T09:00:00Z"}}, {"x": {"t": "2028-02-29T09:00:00.500000Z"}}, None),
    ({"x.t": {"lt": "2028-02-29T09:00:00.5Z"}}, {"x": {"t": "2028-02-29T09:00:00Z"}}, None),
    ({"x.t": "2028-02-29T09:00:00.000Z"}, {"x": {"t": "2028-02-29T09:00:00Z"}}, None),
    ({"x.t": ["2028-02-29T10:00:00+01:00"]}, {"x": {"t": "2028-02-29T09:00:00Z"}}, None),
    ({"x.t": {"ne": "2028-02-29T10:00:00+01:00"}}, {"x": {"t": "2028-02-29T09:00:00Z"}},
     'when x.t != "2028-02-29T10:00:00+01:00": it is "2028-02-29T09:00:00Z"'),
    ({"x.t": {"ge": "2028-02-29"}}, {"x": {"t": "2028-02-29T09:00:00Z"}}, None),  # a date and a time: as text
])
def test_each_kind_of_condition(conditions, inputs, why):
    assert unmet(WHEN.validate_python(conditions), inputs) == why


@pytest.mark.parametrize("conditions, problem", [
    ({"x": 1}, "String should match pattern"),
    ({"x.n": {"gt": None}}, "gt takes a number or a text"),
    ({"x.n": {"gt": float("nan")}}, "gt takes a number or a text"),
    ({"x.n": [{"a": 1}]}, 'holds plain values only, not {"a":1}'),
    ({"x.n": float("inf")}, "comparisons \\(gt, ge, lt, le, ne\\), not inf"),
    ({"x.n": {"between": [1, 2]}}, "unknown comparison 'between'"),
])
def test_a_condition_that_means_nothing_is_refused(conditions, problem):
    with pytest.raises(ValidationError, match=problem):
        WHEN.validate_python(conditions)
