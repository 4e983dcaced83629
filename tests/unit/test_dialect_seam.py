"""Only flow45/dialect/ knows which database it runs on: no other module asks (is_sqlite, the URL's
scheme, the peewee database class), so a third database would be one new dialect class."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flow45.dialect import for_url
from flow45.errors import SettingsError

ROOT = Path(__file__).resolve().parents[2]
DIALECT = ROOT / "flow45" / "dialect"
NAMES = ("sqlite", "postgres")
DATABASE_CLASSES = {"SqliteDatabase", "PostgresqlDatabase", "PostgresqlExtDatabase"}


def _database_word(node: ast.AST) -> bool:
    """A string constant naming a database kind: "sqlite", "postgresql://", ("postgres", ...)."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_database_word(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower().startswith(NAMES)


def questions(source: str) -> list[str]:
    """Each place in `source` that asks which database it is, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        what = None
        name = getattr(node, "id", None) or getattr(node, "attr", None)  # of a Name or an Attribute
        call = getattr(node, "func", None)
        called = getattr(call, "id", None) or getattr(call, "attr", None)
        if name == "is_sqlite":
            what = "is_sqlite"
        elif isinstance(node, ast.alias) and node.name == "is_sqlite":
            what = "imports is_sqlite"
        elif isinstance(node, ast.Call) and called in ("startswith", "endswith"):
            if any(_database_word(a) for a in node.args):
                what = "checks the URL's prefix"
        elif isinstance(node, ast.Compare) and any(_database_word(c) for c in [node.left, *node.comparators]):
            what = "compares with a database name"
        elif isinstance(node, ast.Call) and called == "isinstance":
            classes = {getattr(n, "id", None) or getattr(n, "attr", None) for a in node.args[1:] for n in ast.walk(a)}
            if classes & DATABASE_CLASSES:
                what = "checks the database class"
        if what:
            found.append(f"{node.lineno}: {what}")
    return found


def sources() -> list[Path]:
    files = [p for top in ("flow45", "bridge", "tui", "benchmarks") for p in sorted((ROOT / top).rglob("*.py"))]
    return [p for p in files if DIALECT not in p.parents]


@pytest.mark.parametrize("source, expected", [
    ("from flow45.db import is_sqlite\nif is_sqlite(): pass", ["1: imports is_sqlite", "2: is_sqlite"]),
    ("ok = url.startswith(('postgres://', 'postgresql://'))", ["1: checks the URL's prefix"]),
    ("ok = url.split(':', 1)[0] in ('postgres', 'postgresql')", ["1: compares with a database name"]),
    ("ok = parts.scheme == 'sqlite'", ["1: compares with a database name"]),
    ("ok = isinstance(database.obj, peewee.SqliteDatabase)", ["1: checks the database class"]),
    ("default = 'sqlite:///flow45.db'\nhelp = 'use postgresql://HOST/NAME'", []),  # naming a URL is not asking
])
def test_the_check_finds_each_way_of_asking(source, expected):
    assert questions(source) == expected


def test_no_module_outside_the_dialect_asks_which_database_it_is():
    asked = {str(p.relative_to(ROOT)): q for p in sources() if (q := questions(p.read_text()))}
    assert asked == {}, "ask the bound dialect (flow45.db.dialect()) to do the thing instead"
    assert len(sources()) > 50  # the tree was found


def test_a_database_url_of_another_kind_is_refused_naming_it():
    with pytest.raises(SettingsError, match=r"database URL 'mysql://db/flow45': use sqlite:///PATH or postgresql://"):
        for_url("mysql://db/flow45")
