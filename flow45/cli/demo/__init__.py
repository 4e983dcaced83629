"""`flow45 demo`: the example team's two pipelines end to end, on whatever is installed.

On the embedded default it needs no servers: a fresh SQLite file, the example workers
(`reports_worker` beside this file, which examples/reports_worker.py runs) in-process through the SDK's local transport, and the scheduler service
on a thread, which creates the scheduled run and offers the failed task again. With
FLOW45_DATABASE_URL (postgresql) it runs on that database instead, and with FLOW45_AMQP_URL too the
bridge runs on a thread and the workers use the AMQP transport. The dashboard then opens, where the
newcomer approves the report and undoes what they like; `--headless` has a scripted operator do it
and prints one line per ledger event and per progress report.

The nightly run waits until 06:00 on its day (a timer). So that the demo need not wait hours, its clock
skips ahead to that time once nothing else can move (no worker holds or could take a task), the way a
tester moves a pinned clock: every time the store writes from then on is consistent with it.

It ships in the package with its config and workers, so it runs from any folder. Like the rest of
`flow45.cli` it imports `bridge` and `tui` only inside the functions that need them, so `import flow45`
loads neither.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from flow45 import clock
from flow45 import states as S
from flow45 import store
from flow45.clock import utcnow
from flow45.config import load_config
from flow45.db import connect
from flow45.dialect import names_server
from flow45.errors import Flow45Error
from flow45.migrate import ensure_schema
from flow45.schedule import cron_schedule
from flow45.settings import Settings, TeamSettings, current_settings, use_settings
from flow45.urls import hide_password
from flow45.cli.demo.script import MONTHLY, NIGHTLY, OPERATOR, TEAM, Printer, ScriptedOperator, skip_to_timer

__all__ = ["MONTHLY", "NIGHTLY", "OPERATOR", "TEAM", "Options", "Services", "run_demo", "set_the_stage"]

CONFIG = Path(__file__).resolve().parent / "config"  # examples/config in a source checkout
FLAKY_REGION = "americas"  # its first load fails, so the scheduler's retry is seen
MARKER = ".flow45-demo"  # marks an output folder the demo may empty
WORKERS = 2
CONCURRENCY = 3

log = logging.getLogger("flow45.demo")


@dataclasses.dataclass
class Options:
    database: Path  # the SQLite file, when the settings name no PostgreSQL database
    output: Path  # the workers' files and the log
    headless: bool
    actor: str  # who acts in the dashboard
    timeout: float  # headless: seconds before giving up
    pace: float  # seconds per work step of the example workers


def run_demo(options: Options) -> int:
    """Run the demo. Headless: 0 when every run finished and the script played out, else 1. With the
    dashboard: its exit code, once the newcomer quits it."""
    show_dashboard = None
    if not options.headless:
        show_dashboard, why_not = dashboard()
        if show_dashboard is None:
            print(f"flow45 demo: {why_not}; running headless instead", flush=True)
    printer = Printer()
    settings = set_the_stage(options, echo_workers=printer if show_dashboard is None else None)
    if show_dashboard is not None:
        print(INTRO.format(output=options.output), flush=True)
        input()

    services = Services(settings, options, fast_forward=show_dashboard is not None)
    problems: list[str] = []
    code = 0
    try:
        services.start()
        if show_dashboard is not None:
            code = show_dashboard(options.actor)
            print("flow45 demo: dashboard closed; stopping the workers", flush=True)
        else:
            problems = ScriptedOperator().play(printer, options.timeout)
    finally:
        services.stop()
    if show_dashboard is None:
        printer.drain()
    failed = _summary(settings, options, problems)
    clock.back_to_real_time()
    return code if show_dashboard is not None else failed


def set_the_stage(options: Options, echo_workers: logging.Handler | None) -> Settings:
    """Settings in force, a fresh store and output folder, the example config deployed, the monthly
    run triggered. The scheduler, once started, creates the nightly run."""
    settings = demo_settings(current_settings(), options.database)
    use_settings(settings)
    if settings.amqp_url:  # a broker URL that does not work is told before the store is touched
        from bridge.failures import open_blocking

        open_blocking(settings.amqp_url).close()
    _fresh_store(settings.database_url, options.database)
    _fresh_output(options.output)
    _log_to(options.output / "flow45-demo.log", echo_workers=echo_workers)
    amqp = f", RabbitMQ {hide_password(settings.amqp_url)}" if settings.amqp_url else ""
    print(f"flow45 demo: store {hide_password(settings.database_url)}{amqp}; worker files in {options.output}", flush=True)
    nightly_tick = _deploy()
    # The month before the nightly run's: that run's connected report is of its own month, so the two
    # reports differ even where today's month before is the nightly's (the 1st, before its 02:30 tick;
    # or a demo started at 23:59 on the 31st that reaches this line after midnight).
    store.trigger(TEAM, MONTHLY, {"month": _month_before(nightly_tick)}, actor=OPERATOR)
    return settings


INTRO = f"""
The reports team's two pipelines are deployed from examples/config/reports.yaml:
  monthly_report, run 1, started by hand: extract -> render -> approve (a human task: you) -> publish
      approve is for the reviewers, due 2 days after it is ready; in the dashboard you are {OPERATOR}, one of them
  nightly_sales, run 2, which the scheduler creates for last night's tick:
      load_emea, load_americas, load_apac -> summarize -> morning -> notify   (load_americas fails once, then retries)
      morning is a timer: it waits until 06:00 on the run's day; the demo's clock skips ahead to it
      once nothing else can move
  monthly_report, run 3, connected: the nightly run's success starts a report of the month it loaded
Two workers from examples/reports_worker.py take the tasks and write their files under {{output}}.

In the dashboard: enter opens a run; i lists the human tasks waiting for you (t takes one, so others
see you have it; enter opens the form: set approved and reviewer, add a comment, then ctrl+s). Once publish has run, open run 1, select render and press u
to undo it: render is offered again, approve and publish go back to pending, and publish's worker
gets an undo notice and deletes the published file. ? shows every key; q quits and stops the workers.

Press Enter to open the dashboard."""


def dashboard() -> tuple[Callable[[str], int] | None, str]:
    """The dashboard's entry point, or None and why it cannot open here."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None, "not a terminal, so no dashboard"
    try:
        from tui.app import run_dashboard
    except ImportError as exc:
        return None, f"the dashboard (tui) cannot be imported ({exc})"
    return run_dashboard, ""


def demo_settings(base: Settings, sqlite_file: Path) -> Settings:
    """The installation's settings, with short retry and tick intervals so the demo moves along.

    Without a PostgreSQL database the demo uses its own SQLite file. With a broker, the workers
    connect as the broker user of FLOW45_AMQP_URL, made a worker of team reports for this process."""
    changes: dict[str, Any] = {"default_retry_delay": 1.0, "sweep_interval": 0.25, "relay_interval": 0.2}
    if not names_server(base.database_url):
        changes["database_url"] = f"sqlite:///{sqlite_file.resolve()}"
    if base.amqp_url:
        user = unquote(urlsplit(base.amqp_url).username or "guest")
        mine = base.teams.get(TEAM, TeamSettings())
        others = {team: TeamSettings(users={u: r for u, r in s.users.items() if u != user})
                  for team, s in base.teams.items() if team != TEAM}
        changes["teams"] = {TEAM: TeamSettings(users={**mine.users, user: "worker"}), **others}
    return base.model_copy(update=changes)


# ---- setting the stage --------------------------------------------------------------------------

def _fresh_output(folder: Path) -> None:
    """Empty the output folder, but only one the demo made (it holds the marker file)."""
    if folder.exists():
        if not (folder / MARKER).exists() and any(folder.iterdir()):
            raise Flow45Error(f"{folder} is not empty and was not made by flow45 demo; choose another --output")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by flow45 demo; emptied by the next one\n")


def _log_to(path: Path, echo_workers: logging.Handler | None) -> None:
    """Everything goes to the log file; headless, the workers' own lines also go to `echo_workers`
    (the printer)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(_on_demo_clock(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s")))
    root.addHandler(to_file)
    root.setLevel(logging.INFO)
    logging.getLogger("pika").setLevel(logging.WARNING)
    if echo_workers is not None:
        logging.getLogger("reports-worker").addHandler(echo_workers)


def _on_demo_clock(formatter: logging.Formatter) -> logging.Formatter:
    """Log times in UTC on the demo's clock (it may skip ahead), like the ledger's."""
    formatter.converter = lambda seconds: (
        dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None) + clock.ahead()).timetuple()
    return formatter


def _fresh_store(url: str, sqlite_file: Path) -> None:
    """SQLite: the demo's own file, recreated. PostgreSQL: an empty database, or a refusal (before
    anything is written to it, the schema included)."""
    from flow45.models import Workflow

    if not names_server(url):
        folder = sqlite_file.parent
        if folder.is_dir() and not os.access(folder, os.W_OK):
            raise Flow45Error(f"{folder.resolve()}: cannot write in this folder, where the demo makes its store; "
                              "run it from a folder you can write to, or choose another --database")
        if sqlite_file.exists() and not _demo_made(sqlite_file):
            raise Flow45Error(f"{sqlite_file} is not a store made by flow45 demo, which recreates its file; "
                              "choose another --database")
        if sqlite_file.exists() and _in_use(sqlite_file):
            raise Flow45Error(f"{sqlite_file} is in use (a demo still running, or a dashboard on it): stop that, "
                              "or choose another --database")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
    connect(url, create=True)
    if names_server(url) and Workflow.table_exists() and Workflow.select().exists():
        raise Flow45Error(
            f"{hide_password(url)} already has workflows; the demo deploys its own and needs an empty database "
            "(createdb flow45_demo, then FLOW45_DATABASE_URL=postgresql://…/flow45_demo)"
        )
    ensure_schema()


def _demo_made(sqlite_file: Path) -> bool:
    """Whether the demo may recreate this file: an empty SQLite file, or a store whose workflows (if
    any) are all the demo's, deployed by its operator. Anything else may be someone's only copy."""
    try:
        connection = sqlite3.connect(f"{sqlite_file.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return True
            if not {"workflow", "workflow_version"} <= tables:
                return False
            (others,) = connection.execute(
                "SELECT count(*) FROM workflow w LEFT JOIN workflow_version v ON v.workflow_id = w.id "
                "WHERE w.team != ? OR v.deployed_by != ?", (TEAM, OPERATOR)).fetchone()
            return others == 0
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            return False
        raise Flow45Error(f"{sqlite_file}: cannot read it ({exc}), so cannot tell whether flow45 demo made it; "
                          "choose another --database") from None


def _in_use(sqlite_file: Path) -> bool:
    """Whether another process has the store open: removing its files under it would leave that
    process writing to a file no longer there. SQLite's exclusive lock is had only while none has."""
    connection = sqlite3.connect(sqlite_file, timeout=0)
    try:
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)  # else (a read-only folder…) the removal says what is wrong
    finally:
        connection.close()


def _deploy() -> dt.datetime:
    """Deploy examples/config as if the team had deployed nightly_sales a minute before its latest
    cron tick, so the scheduler, starting now, finds that tick due and creates its run. The other
    workflows are deployed now: backdating them too would make their own ticks in between due (on the
    1st of a month, a scheduled monthly_report beside the demo's own). Returns that tick."""
    [team] = load_config(CONFIG)
    now = utcnow()
    schedule = team.workflows[NIGHTLY].schedule
    tick = cron_schedule(schedule.cron, schedule.timezone).latest_at(now)
    deployed_at = tick - dt.timedelta(minutes=1)
    nightly_alone = dataclasses.replace(team, workflows={NIGHTLY: team.workflows[NIGHTLY]})
    store.deploy([nightly_alone], actor=OPERATOR, now=deployed_at)
    report = store.deploy([team], actor=OPERATOR, now=now)
    names = ", ".join(f"{w.workflow} v{w.version}" for w in report.workflows)
    print(f"flow45 demo: deployed {CONFIG} ({names}); {NIGHTLY} as of {deployed_at:%Y-%m-%d %H:%M} UTC, "
          f"a minute before its last tick ({schedule.cron})", flush=True)
    return tick


def _month_before(moment: dt.datetime) -> str:
    first = moment.date().replace(day=1)
    return f"{first - dt.timedelta(days=1):%Y-%m}"


# ---- what runs while the demo plays -------------------------------------------------------------

class Services:
    """The scheduler service, the bridge (with a broker) and the example workers, on threads; with
    `fast_forward`, also a thread that skips the clock ahead to a waiting timer (the dashboard's
    newcomer has no script to do it)."""

    def __init__(self, settings: Settings, options: Options, fast_forward: bool = False):
        self.settings = settings
        self.options = options
        self.fast_forward = fast_forward
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.bridge = None
        self.workers: list = []

    def start(self) -> None:
        from flow45.scheduler import Scheduler

        scheduler = Scheduler(self.settings.database_url, holder=f"flow45-demo-{id(self):x}")
        self._thread("scheduler", scheduler.run, self.stopping)
        if self.settings.amqp_url:
            from bridge.failures import open_blocking
            from bridge.service import Bridge
            from bridge.topology import declare

            connection = open_blocking(self.settings.amqp_url)  # a wrong URL: one line, not a traceback
            try:
                declare(connection.channel(), self.settings)  # queues before workers
            finally:
                connection.close()
            self.bridge = Bridge(self.settings)
            self._thread("bridge", self.bridge.run)
        from flow45.cli.demo import reports_worker as example
        for number in range(1, WORKERS + 1):
            worker = example.build(
                _worker(self.settings, f"reports-{number}"), pause=self.options.pace, output=self.options.output,
                fail_first=[FLAKY_REGION],
            )
            worker.start(concurrency=CONCURRENCY)
            self.workers.append(worker)
        if self.fast_forward:
            self._thread("clock", self._skip_ahead_when_idle)

    def _skip_ahead_when_idle(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                skip_to_timer(tell=log.info)  # the dashboard has the terminal: to the log file
            except Exception:  # a busy database now and then: look again at the next turn
                log.exception("demo clock: could not look for a waiting timer")

    def _thread(self, name: str, target: Callable, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"demo-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        """Workers first (running tasks finish and report), then the bridge and the scheduler."""
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            if not worker.join(timeout=30):
                log.warning("worker %s did not stop within 30s", worker.name)
        self.workers = []
        self.stopping.set()
        if self.bridge is not None:
            self.bridge.stop()
        for thread in self.threads:
            thread.join(timeout=15)
        self.threads = []


def _worker(settings: Settings, name: str):
    from bridge.sdk import Worker

    if settings.amqp_url:
        from bridge.sdk import AmqpTransport

        return Worker(AmqpTransport(settings.amqp_url, TEAM, name))
    from bridge.sdk import LocalTransport

    return Worker(LocalTransport(TEAM, name))


def _summary(settings: Settings, options: Options, problems: list[str]) -> int:
    print("\nsummary", flush=True)
    env = f"FLOW45_DATABASE_URL={settings.database_url} " if not names_server(settings.database_url) else ""
    for run in reversed(store.list_runs(team=TEAM, limit=100)):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
        when = f" for {run.logical_time:%Y-%m-%d %H:%M} UTC" if run.logical_time else ""
        print(f"  run {run.id} {run.workflow} ({run.trigger}{when}): {run.status} ({counts})")
        for i in store.get_run(run.id).instances if run.status == S.RUNNING else ():
            if i.human and i.state == S.AVAILABLE:
                print(f"    {i.task} waits for you: {env}flow45 --as {options.actor} submit {i.id} --output "
                      f"'{{\"approved\": true, \"reviewer\": \"{options.actor}\"}}'")
    files = sorted(p.relative_to(options.output) for p in options.output.rglob("*") if p.is_file() and p.name != MARKER)
    print(f"  files in {options.output}: {', '.join(str(f) for f in files) or 'none'}")
    for problem in problems:
        print(f"  NOT DONE: {problem}")
    print(f"  look around: {env}flow45 runs   (or flow45 show RUN, flow45 events, flow45 tui)", flush=True)
    return 1 if problems else 0
