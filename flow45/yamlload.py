"""YAML reading that refuses what PyYAML would silently accept (duplicate keys), and reads plain
values as YAML 1.2 does, not 1.1.

YAML 1.1 reads yes, no, on and off as booleans: a country code NO, an enum value `no` or a task
named `off` turned into true or false. It reads 010 as 8 (octal), and 1:30 as 90 (base 60): a timer
`wait: 1:30` waited 90 seconds, and `wait_until: 16:30` was refused as not text. YAML 1.2 (its core
schema) has only true and false as booleans, numbers are decimal, 0o octal or 0x hex, and a date is
text, as in JSON: a date field of a type reads it as it reads a worker's output."""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml


BOOL_TAG, INT_TAG, FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


# libyaml's parser where PyYAML has it (its wheels do): a config reads several times faster.
class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (BOOL_TAG, INT_TAG, FLOAT_TAG, TIMESTAMP_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_StrictLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_StrictLoader.add_implicit_resolver(INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                    list("-+0123456789"))
_StrictLoader.add_implicit_resolver(
    FLOAT_TAG, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                          r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))


def _int_1_2(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)  # decimal, leading zeros and all: 010 is ten


def _float_1_2(loader: _StrictLoader, node: yaml.ScalarNode) -> float | str:
    value = loader.construct_yaml_float(node)
    if math.isinf(value) and "inf" not in node.value.lower():
        return node.value  # too large to hold (1e400): kept as written, so a check names it as written
    return value


_StrictLoader.add_constructor(INT_TAG, _int_1_2)
_StrictLoader.add_constructor(FLOAT_TAG, _float_1_2)


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


class YamlProblem(Exception):
    """A file that cannot be read as YAML, with the place in it."""


# Values a document may hold once its aliases are expanded. A few hundred bytes of aliases to
# aliases name a billion strings: validated, stored or sent, they would hold a process (a bridge
# that every team shares, for a deploy sent through the broker) for minutes and exhaust its memory.
MAX_EXPANDED_VALUES = 1_000_000


def _expanded_values(root: yaml.Node) -> int | None:
    """How many values the document holds with every alias expanded, counted without expanding:
    each node's count is worked out once. Stops counting past the limit; None if an alias refers to
    a value that holds it (expanded, it never ends)."""
    counts: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack[-1]
        if id(node) in counts:
            stack.pop()
            continue
        children = [] if isinstance(node, yaml.ScalarNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value)
        if id(node) not in entered:
            entered.add(id(node))
            for child in children:
                if id(child) in entered and id(child) not in counts:
                    return None
                stack.append(child)
            continue
        stack.pop()
        counts[id(node)] = min(1 + sum(counts[id(child)] for child in children), MAX_EXPANDED_VALUES + 1)
    return counts[id(root)]


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise YamlProblem(f"{path}: cannot read: {exc.strerror}") from exc


def read_yaml(path: Path) -> object:
    loader = _StrictLoader(read_text(path))
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_values(node)
        if expanded is None:
            raise YamlProblem(f"{path}: an alias refers to a value that holds it")
        if expanded > MAX_EXPANDED_VALUES:
            raise YamlProblem(f"{path}: its aliases expand to more than {MAX_EXPANDED_VALUES:,} values")
        return loader.construct_document(node)
    except RecursionError:
        raise YamlProblem(f"{path}: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = exc.problem or exc.context or "invalid YAML"
        if what == "exceeded maximum nesting depth":  # libyaml's words for it
            what = "nested too deeply"
        raise YamlProblem(f"{where}: {what}") from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"{path}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
