"""A team's declared types as pydantic models a handler can be annotated with.

The core's `TypeRegistry` names model fields f0, f1, … behind aliases (so a declared field may be
called `json`); here a field keeps its declared name as attribute whenever Python and pydantic allow
it, so a handler reads `sales.uri`. The JSON form (`model_dump(by_alias=True)`) is the same.
"""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict

from flow45.config import TeamConfig, load_config
from flow45.errors import NotFound
from flow45.types import TypeRegistry



class DeclaredModel(BaseModel):
    """Base of the models built from declared types: unknown keys refused, fields by name or alias."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)


def _attribute_name(declared: str, index: int) -> str:
    usable = (
        declared.isidentifier() and not keyword.iskeyword(declared) and not declared.startswith("_")
        and not declared.startswith("model_") and not hasattr(BaseModel, declared)
    )
    return declared if usable else f"f{index}"


class NamedTypeRegistry(TypeRegistry):
    """TypeRegistry whose models use the declared field names as attribute names where possible."""

    base = DeclaredModel
    attribute = staticmethod(_attribute_name)


class TeamTypes:
    """The models of one team's declared types: `types.Document`, `types["Document"]`, and each
    function's signature as models (`types.signature("render_pdf")`)."""

    def __init__(self, config: TeamConfig):
        self.team = config.team
        self._config = config
        self._registry = NamedTypeRegistry(config.types)

    def __getattr__(self, name: str) -> type[BaseModel]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"team {self.team} declares no type {name!r}") from None

    def __getitem__(self, name: str) -> type[BaseModel]:
        if name not in self._config.types:
            raise KeyError(name)
        return self._registry.model(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._config.types))

    def __contains__(self, name: object) -> bool:
        return name in self._config.types

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._config.types]

    def signature(self, function: str) -> tuple[dict[str, type[BaseModel]], type[BaseModel]]:
        """(parameter -> input model, output model) of a function the team's workflows use."""
        found = self._config.signatures().get(function)
        if found is None:
            raise NotFound(f"team {self.team} has no task with function {function!r}")
        signature, _ = found
        return {param: self[type_name] for param, type_name in signature.inputs}, self[signature.output]


def load_types(config_path: Path | str, team: str) -> TeamTypes:
    """The pydantic models of `team`'s declared types, from its YAML file or folder.

    Raises flow45's ConfigError if the configuration is invalid, NotFound if it has no such team."""
    for config in load_config(config_path):
        if config.team == team:
            return TeamTypes(config)
    raise NotFound(f"{config_path}: no configuration for team {team!r}")
