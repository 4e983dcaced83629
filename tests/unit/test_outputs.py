"""A submitted output is small, typed and free of secrets; ordinary metadata passes."""

from __future__ import annotations

import pytest

from flow45.config import TypeSpec
from flow45.errors import InvalidOutput
from flow45.outputs import check_output, find_secret
from flow45.types import TypeRegistry

TYPES = TypeRegistry({
    "Document": TypeSpec.model_validate({"fields": {
        "uri": "string",
        "checksum": {"type": "string", "optional": True},
        "comment": {"type": "string", "optional": True},
    }}),
})


def check(output: dict, max_bytes: int = 16384) -> dict:
    return check_output(TYPES, "Document", output, max_bytes, "reports/monthly_report/render")


def test_a_valid_output_is_returned_as_stored():
    assert check({"uri": "s3://docs/2024-05.pdf"}) == {"uri": "s3://docs/2024-05.pdf", "checksum": None, "comment": None}


def test_an_output_over_the_size_cap_is_refused_naming_size_and_cap():
    output = {"uri": "s3://docs/x.pdf", "comment": "x" * 300}
    with pytest.raises(InvalidOutput, match=r"reports/monthly_report/render: output is \d+ bytes .* cap of 256"):
        check(output, max_bytes=256)
    assert check(output, max_bytes=1024)["comment"] == "x" * 300


def test_an_output_not_of_its_type_is_refused():
    with pytest.raises(InvalidOutput, match="not a valid Document: output.pages: unknown field"):
        check({"uri": "u", "pages": 3})


@pytest.mark.parametrize("value, what", [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow...", "a private key"),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "a bearer token"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "a JSON web token"),
    ("key AKIAIOSFODNN7EXAMPLE", "an AWS access key"),
    ("token ghp_" + "a1B2" * 9, "an API key"),
    ("postgresql://report:hunter2@db.internal/sales", "a URL with a password"),
    ("https://export.example.com/sales.csv?month=2026-11&api_key=9f86d0818", "a secret given as name=value"),
    ("host=db.internal user=report password=hunter2 dbname=sales", "a secret given as name=value"),
    ("ran load.sh --token=s3cr3t", "a secret given as name=value"),
    ("https://idp.example.com/cb#access_token=abc.def", "a secret given as name=value"),
])
def test_secret_values_are_refused(value, what):
    with pytest.raises(InvalidOutput, match=f"output.comment: the value looks like {what}"):
        check({"uri": "s3://docs/x.pdf", "comment": value})


def test_a_field_named_like_a_secret_is_refused_even_nested():
    assert find_secret({"uri": "u", "extra": [{"db_password": "hunter2"}]}) == (
        "output.extra.0.db_password: the field name looks like a secret"
    )


@pytest.mark.parametrize("output", [
    {"uri": "https://reports.example.com/2024/05/report.pdf?version=3"},
    {"uri": "s3://docs/ghosts/x.pdf", "checksum": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    {"uri": "u", "comment": "Please rotate the token before the June run, the bearer of bad news says."},
    {"uri": "https://api.example.com/items?page_token=CiAKGjBpNDd2&limit=100"},  # a page's place, not a key
    {"uri": "u", "comment": "token=, password= and secret= left empty in the form"},
])
def test_ordinary_metadata_is_not_mistaken_for_a_secret(output):
    assert check(output)["uri"] == output["uri"]
