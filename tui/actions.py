"""The operator's actions on an instance or a run, shared by the screens and the command palette.

Each opens the confirmation modal that says what will change; the modal makes the change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from flow45 import states as S
from flow45.views import InstanceView, RunView
from tui.background import off_ui
from tui.screens.base import notify_refusal
from tui.screens.modals import (
    CancelRunModal, HoldModal, ReleaseModal, RetryModal, SkipModal, TakeOverModal, UndoModal,
)

if TYPE_CHECKING:
    from tui.app import Dashboard

INSTANCE_ACTIONS = [
    # (key, action name, label, help)
    ("u", "undo", "Undo", "undo the instance and what followed from it (shows the affected set)"),
    ("s", "skip", "Skip", "skip the instance; downstream tasks get null for it"),
    ("r", "retry", "Retry", "offer a failed instance again"),
    ("h", "hold", "Hold", "pause an instance that has not started"),
    ("l", "release", "Release", "let a held instance go"),
    ("f", "form", "Human form", "fill in and submit an available human task"),
    ("o", "set_output", "Set output", "set a worker task's output by hand, typed, with a reason"),
]


def open_instance_action(app: Dashboard, name: str, instance: InstanceView | None) -> None:
    if instance is None:
        app.notify("no task instance selected", severity="warning")
        return
    if name == "form":
        open_human_form(app, instance)
        return
    if name == "set_output":
        open_set_output(app, instance)
        return
    modal = {"undo": UndoModal, "skip": SkipModal, "retry": RetryModal, "hold": HoldModal,
             "release": ReleaseModal}[name]
    app.push_screen(modal(instance))


def open_human_form(app: Dashboard, instance: InstanceView) -> None:
    if not instance.human:
        app.notify(f"{instance.task} is not a human task: its worker submits it", severity="warning")
        return
    if instance.state != S.AVAILABLE:
        app.notify(f"{instance.task} is {instance.state}; only an available human task can be submitted",
                   severity="warning")
        return
    from tui.screens.human import HumanTaskScreen

    try:
        app.push_screen(HumanTaskScreen(instance.id))
    except Exception as exc:  # gone since it was shown, or the database failed
        if not notify_refusal(app, exc):
            raise


def take(app: Dashboard, instance: InstanceView | None) -> None:
    """Take a human task: at once when nobody has it, through a modal asking why when someone does."""
    if instance is None:
        app.notify("no human task selected", severity="warning")
        return
    if instance.taken_by and instance.taken_by != app.actor:
        app.push_screen(TakeOverModal(instance))
        return

    def done(_previous: str | None) -> None:
        app.notify(f"took human task {instance.id} ({instance.task}): others see you have it", title="Done")
        app.feed.poke()

    if off_ui(app, f"taking human task {instance.id}", lambda: app.client.take(instance.id), done):
        app.notify(f"taking human task {instance.id} ({instance.task})…")


def open_set_output(app: Dashboard, instance: InstanceView) -> None:
    if instance.human:
        app.notify(f"{instance.task} is a human task: fill in its form (f)", severity="warning")
        return
    from tui.screens.set_output import SetOutputScreen

    try:
        app.push_screen(SetOutputScreen(instance.id))
    except Exception as exc:  # gone since it was shown, or the database failed
        if not notify_refusal(app, exc):
            raise


def open_cancel(app: Dashboard, run: RunView | None) -> None:
    if run is None:
        app.notify("no run selected", severity="warning")
        return
    app.push_screen(CancelRunModal(run))


def instance_commands(
    app: Dashboard, instance: InstanceView | None
) -> list[tuple[str, str, Callable[[], Any]]]:
    """Palette entries for the selected instance."""
    if instance is None:
        return []
    entries = []
    for _key, name, label, help_text in INSTANCE_ACTIONS:
        if (name == "form" and not instance.human) or (name == "set_output" and instance.human):
            continue
        entries.append((
            f"{label} instance {instance.id} ({instance.task})", help_text,
            lambda name=name: open_instance_action(app, name, instance),
        ))
    return entries
