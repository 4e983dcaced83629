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


def read_yaml(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise YamlProblem(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = exc.problem or exc.context or "invalid YAML"
        raise YamlProblem(f"{where}: {what}") from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"{path}: invalid YAML: {exc}") from exc
