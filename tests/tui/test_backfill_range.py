"""The backfill dialog's range, read as typed: its dry run runs at every keystroke, so whatever is
typed gives a line under the inputs, never an error that ends the dashboard."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45.errors import Flow45Error
from tui.screens.workflow_tools import _moment


def test_a_date_as_the_end_covers_its_whole_day_even_the_calendars_last():
    assert _moment("2028-02-29", end_of_day=True) == dt.datetime(2028, 2, 29, 23, 59, 59, 999999)
    assert _moment("9999-12-31", end_of_day=True) == dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    assert _moment("2026-03-01T06:00:00+01:00", end_of_day=False) == dt.datetime(2026, 3, 1, 5)


@pytest.mark.parametrize("typed, said", [
    ("0001-01-01T00:00:00+01:00", "is outside the calendar once made UTC"),
    ("2027-02-29", "'2027-02-29' names no real day or time: day is out of range for month"),
    ("2026-03-01T24:00", "names no real day or time: hour must be in 0..23"),
    ("2026-03", "expected a date such as 2026-03-01"),
])
def test_what_names_no_moment_is_said_not_raised(typed, said):
    with pytest.raises(Flow45Error, match=said):
        _moment(typed, end_of_day=False)
