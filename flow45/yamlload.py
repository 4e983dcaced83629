"""YAML reading that refuses what PyYAML would silently accept: duplicate keys."""

from __future__ import annotations

from pathlib import Path

import yaml


BOOL_TAG, STR_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str"


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == BOOL_TAG and key_node.value == "on" and isinstance(key_node, yaml.ScalarNode):
            key_node.tag = STR_TAG  # YAML 1.1 reads the key `on` (a workflow's trigger) as true
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


def read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise YamlProblem(f"{path}: cannot read: {exc.strerror}") from exc
    loader = _StrictLoader(text)
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
        raise YamlProblem(f"{where}: {what}") from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"{path}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
