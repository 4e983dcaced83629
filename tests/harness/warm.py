"""What the fork server of tests.harness.commands imports before it forks a command: the command line,
the core and the broker client, with the message and config models built, so that a command's process
starts with its imports done.

Left out, for a command to import itself: what reads the environment as it is imported (a fork would
keep the fork server's reading of it) — prometheus_client (its multiprocess mode; through
flow45.metrics, hence the scheduler, the relay and the bridge's service), urllib's proxy settings
(flow45.notify), wsgiref — and the dashboard. tests/harness/test_commands.py proves that importing
this module reads no environment variable at all."""

from __future__ import annotations

import gc
import importlib
import pkgutil

import pydantic

import bridge
import flow45
import tests.pinned  # noqa: F401 (time_machine, for `python -m tests.pinned MOMENT -m flow45 ...`)

READS_ENVIRONMENT = ("flow45.metrics", "flow45.scheduler", "flow45.notify.follow", "flow45.notify.post",
                     "bridge.commits", "bridge.relay", "bridge.service")
NOT_FOR_SHORT_COMMANDS = ("flow45.cli.demo", "bridge.sdk")


def _modules(package) -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return [name for name in names if not name.endswith(".__main__")  # __main__ runs the command
            and not name.startswith(READS_ENVIRONMENT + NOT_FOR_SHORT_COMMANDS)]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


for _name in ["flow45.cli"] + _modules(flow45) + _modules(bridge):
    importlib.import_module(_name)

# Built as a command builds them on first use (defer_build, cached adapters): each command would
# otherwise build the ones it uses again.
for _model in list(_subclasses(pydantic.BaseModel)):
    if _model.__module__.startswith(("flow45.", "bridge.")) and not _model.__pydantic_complete__:
        _model.model_rebuild(force=True)
for _adapter in ("worker_messages", "callback_messages", "operator_messages", "operator_reads"):
    getattr(flow45.messages, _adapter)()

# Out of the collector's sight: its passes in a child would otherwise touch (and copy) every page.
gc.freeze()
