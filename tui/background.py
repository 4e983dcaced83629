"""Client calls off the UI thread. Through the broker a call may wait up to the client's timeout
(30 s); made on the UI thread it froze the whole dashboard meanwhile: no redraw, no key. Each runs in
a Textual thread worker instead, and its answer comes back to the UI thread with `call_from_thread`."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Callable, TypeVar

from tui.screens.base import refusal

if TYPE_CHECKING:
    from tui.app import Dashboard

T = TypeVar("T")


def off_ui(app: Dashboard, what: str | None, call: Callable[[], T], done: Callable[[T], None],
           refused: Callable[[str], None] | None = None) -> bool:
    """Run `call` (its client calls) in a thread, then `done(answer)` on the UI thread, or `refused(message)`
    when the core refuses or the database or broker fails (by default a notice). `what` names the action
    ("undo of instance 7"): while one is under way, the same again is refused with a notice (False).
    None: a read, never refused (the caller shows the newest)."""
    if what is not None and what in app.under_way:
        app.notify(f"{what} is under way: its answer comes here", severity="warning")
        return False
    if what is not None:
        app.under_way.add(what)
    client = app.client
    context = contextvars.copy_context()  # the app's: `self.app` works in the thread, even for a screen popped since

    def back(show: Callable[[], None]) -> None:
        app.under_way.discard(what)
        show()

    def answer(show: Callable[[], None]) -> None:
        try:
            app.call_from_thread(back, show)
        except RuntimeError:  # the dashboard closed meanwhile: nobody to tell
            pass

    def work() -> None:
        try:
            result = context.run(call)
        except Exception as exc:
            if (message := refusal(exc)) is None:
                answer(lambda: None)
                raise  # a bug: the worker fails and the dashboard exits with it, as on the UI thread
            answer(lambda: (refused or notice_of(app))(message))
            return
        finally:
            client.close()  # the connection this pooled thread opened (database or broker): not kept idle
        answer(lambda: done(result))

    app.run_worker(work, name=what or "read", group="client", thread=True)
    return True


def notice_of(app: Dashboard) -> Callable[[str], None]:
    return lambda message: app.notify(message, title="Refused", severity="error")
