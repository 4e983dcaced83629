"""The README's first command: `flow45 demo --headless` plays the whole story on SQLite and exits 0.

The demos that only tell the story (at the default pace, and on each awkward day) start side by side
as the module begins, each in its own folder with its own clock, and the other tests run meanwhile:
the demos spend most of their time waiting (work steps, the review, a retry delay), so together they
take about as long as the slowest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pinned
from tests.harness import commands

ROOT = Path(__file__).resolve().parents[2]
WAIT = 240  # seconds: a guard against a hung demo, not a speed limit


def demo_env(**extra: str) -> dict[str, str]:
    """The environment of a bare machine: no FLOW45_* settings, only what the test adds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW45_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run_demo(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        pinned.command([sys.executable, "-m", "flow45", "demo", *args]), cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env=env or demo_env(), stdin=subprocess.DEVNULL,
    )


@dataclasses.dataclass
class Started:
    """A demo running in its own folder; `result()` waits for it."""

    folder: Path
    process: subprocess.Popen

    @classmethod
    def start(cls, folder: Path, argv: list[str]) -> Started:
        folder.mkdir(parents=True)
        with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
            process = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=err, env=demo_env(), stdin=subprocess.DEVNULL)
        return cls(folder, process)

    def result(self) -> subprocess.CompletedProcess:
        try:
            self.process.wait(timeout=WAIT)
            hung = ""
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            hung = f"\n(killed: not done after {WAIT}s)"
        out, err = ((self.folder / name).read_text() for name in ("stdout.txt", "stderr.txt"))
        err += hung
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def assert_the_story_was_told(out: str) -> None:
    """Every act of the demo shows in its output, in the ledger's own words."""
    assert re.search(r"trigger\s+run 1 monthly_report .*demo-operator\s+manual", out)
    assert re.search(r"trigger\s+run 2 nightly_sales .*flow45-scheduler\s+schedule \d{4}-\d\d-\d\d 02:30 UTC", out)
    # Each report a worker makes is a line of its own (through the printer): none is missed, however busy the machine.
    assert re.search(r"worker\s+progress of run 1 render: 50%, page 2 of 4$", out, re.MULTILINE), "progress is visible"
    assert re.search(r"fail\s+run 2 load_americas\s+running -> retry_wait .*connection reset", out)
    assert re.search(r"retry\s+run 2 load_americas\s+retry_wait -> available\s+flow45-scheduler", out)
    assert len(re.findall(r"take\s+run 1 approve\s+demo-operator", out)) == 2, "the approval is taken, then decided"
    assert len(re.findall(r"submit\s+run 1 approve\s+running -> succeeded\s+demo-operator", out)) == 2
    # The nightly run waits for 06:00 on its day (a timer), then tells the team; its success starts
    # the month's report (a connected workflow), which is approved like the first.
    assert re.search(r"ready\s+run 2 morning\s+pending -> waiting .*due (\d{4}-\d\d-\d\d)T06:00:00Z", out)
    fired = re.search(r"timer\s+run 2 morning\s+waiting -> succeeded\s+flow45-scheduler", out)
    assert fired and fired.start() < re.search(r"claim\s+run 2 notify", out).start(), "notify waits for the timer"
    assert re.search(r"trigger\s+run 3 monthly_report\s+- -> running .*connected to run 2 of reports/nightly_sales", out)
    assert re.search(r"connect\s+run 2\s+.*started run 3 monthly_report", out)
    assert re.search(r"submit\s+run 3 approve\s+running -> succeeded\s+demo-operator", out)
    assert re.search(r"undo\s+run 1 render\s+succeeded -> available\s+demo-operator\s+wrong logo", out)
    assert re.search(r"undo\s+run 1 publish\s+succeeded -> pending", out)
    assert re.search(r"worker\s+undo of run 1 publish by demo-operator: .*removed the published file .*"
                     r"published/report-\d{4}-\d\d\.pdf", out), "the undo notice reached publish's on_undo"
    assert re.search(r"run 1 monthly_report \(manual\): succeeded \(succeeded 4\)", out)
    assert re.search(r"run 2 nightly_sales \(schedule for .*\): succeeded \(succeeded 6\)", out)
    assert re.search(r"run 3 monthly_report \(connected\): succeeded \(succeeded 4\)", out)
    assert "NOT DONE" not in out


def published_reports(out: str) -> set[str]:
    """The first run's report (the month before the demo) and the connected run's (the nightly run's month)."""
    month = re.search(r"querying sales for (\d{4}-\d\d)", out)[1]
    nightly = re.search(r"schedule (\d{4}-\d\d)-\d\d 02:30 UTC", out)[1]
    return {f"report-{month}.pdf", f"report-{nightly}.pdf"}


def runs_in_summary(out: str) -> list[str]:
    return re.findall(r"^  run (\d+ \w+) \(", out, re.MULTILINE)


AWKWARD_MOMENTS = {
    # The monthly schedule's tick (06:00 Amsterdam on the 1st) has passed; it must not add a run.
    "first-of-month-after-the-monthly-tick": "2026-12-01T05:30:00Z",
    "leap-day": "2028-02-29T02:31:00Z",
    "new-years-eve-23:59": "2026-12-31T23:59:30Z",
    # Before the nightly tick on the 1st: the month before today is the nightly run's own.
    "first-of-month-before-the-nightly-tick": "2027-01-01T00:10:00Z",
    "dst-spring-forward-in-amsterdam": "2027-03-28T01:30:00Z",
    "dst-fall-back-in-amsterdam": "2026-10-25T00:59:50Z",
}
STORY = "the story at the default pace"


@pytest.fixture(scope="module", autouse=True)
def demos(request, tmp_path_factory):
    """The demos this module's selected tests check, started side by side as the module's first test
    starts (the others run meanwhile): the story at the default pace, and each awkward day's at a
    quick pace with the clock pinned at its moment (ticking on)."""
    wanted = set()
    for item in request.session.items:
        if item.module is request.module and item.originalname == "test_headless_demo_plays_the_story_on_sqlite":
            wanted.add(STORY)
        elif item.module is request.module and item.originalname == "test_the_demo_tells_the_same_story_on_awkward_days":
            wanted.add(item.callspec.params["day"])
    folders = tmp_path_factory.mktemp("demos")
    started = {}
    try:
        if STORY in wanted:
            # --timeout: a machine busy with the other demos may take longer than the default minute.
            started[STORY] = Started.start(folders / "story", pinned.command(
                [sys.executable, "-m", "flow45", "demo", "--headless", "--timeout", str(WAIT - 30)]))
        for day in wanted - {STORY}:
            started[day] = Started.start(folders / day.replace(":", ""), [
                sys.executable, "-m", "tests.pinned", AWKWARD_MOMENTS[day], "-m", "flow45", "demo", "--headless",
                "--pace", "0.25", "--timeout", str(WAIT - 30)])
        yield started
    finally:
        for demo in started.values():
            if demo.process.poll() is None:
                demo.process.kill()
                demo.process.wait()


def test_the_demo_recreates_its_database_and_folder_and_needs_no_terminal(tmp_path):
    """Run twice; the second time without --headless and without a terminal: it says so, runs
    headless, and starts from a fresh store (run ids begin at 1 again)."""
    first = run_demo(tmp_path, "--headless", "--pace", "0.02")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (tmp_path / "flow45-demo-output" / "leftover.txt").write_text("from an earlier demo")
    again = run_demo(tmp_path, "--pace", "0.02")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.startswith("flow45 demo: not a terminal, so no dashboard; running headless instead")
    assert "run 1 monthly_report (manual): succeeded" in again.stdout
    assert runs_in_summary(again.stdout) == runs_in_summary(first.stdout), "run ids begin at 1 again"
    assert not (tmp_path / "flow45-demo-output" / "leftover.txt").exists()


def test_the_demo_will_not_empty_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    done = run_demo(tmp_path, "--headless", "--output", "notes")
    assert done.returncode == 1
    assert "notes is not empty and was not made by flow45 demo; choose another --output" in done.stderr
    assert (mine / "todo.txt").read_text() == "keep me"


@pytest.mark.parametrize("kind", ["another team's store", "not a store"])
def test_the_demo_will_not_recreate_a_database_it_did_not_make(tmp_path, kind):
    mine = tmp_path / "mine.db"
    if kind == "not a store":
        mine.write_text("keep me")
    else:
        config = tmp_path / "acme.yaml"
        config.write_text("team: acme\ntypes: {Blob: {fields: {uri: string}}}\n"
                          "workflows: {w: {tasks: {a: {function: fa, output: Blob}}}}\n")
        deployed = commands.run([sys.executable, "-m", "flow45", "deploy", str(config)], cwd=tmp_path,
                                env=demo_env(FLOW45_DATABASE_URL=f"sqlite:///{mine}"))
        assert deployed.returncode == 0, deployed.stderr
    before = mine.read_bytes()
    done = run_demo(tmp_path, "--headless", "--database", "mine.db")
    assert done.returncode == 1
    assert "mine.db is not a store made by flow45 demo, which recreates its file; choose another --database" in done.stderr
    assert mine.read_bytes() == before and not (tmp_path / "flow45-demo-output").exists()


def test_the_demo_will_not_recreate_a_database_in_use(tmp_path):
    url = f"sqlite:///{tmp_path / 'flow45-demo.db'}"
    made = commands.run([sys.executable, "-m", "flow45", "db", "upgrade"], cwd=tmp_path, env=demo_env(FLOW45_DATABASE_URL=url))
    assert made.returncode == 0, made.stderr
    watching = sqlite3.connect(tmp_path / "flow45-demo.db")  # as a dashboard or an earlier demo has it open
    try:
        watching.execute("SELECT count(*) FROM run").fetchone()
        done = run_demo(tmp_path, "--headless")
        assert done.returncode == 1
        assert "flow45-demo.db is in use (a demo still running, or a dashboard on it)" in done.stderr
        assert watching.execute("SELECT count(*) FROM schema_version").fetchone()[0] > 0, "the same file, kept"
    finally:
        watching.close()


def test_headless_demo_plays_the_story_on_sqlite(demos):
    folder, done = demos[STORY].folder, demos[STORY].result()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_the_story_was_told(done.stdout)
    assert (folder / "flow45-demo.db").exists()
    output = folder / "flow45-demo-output"
    published = list((output / "published").iterdir())
    assert {p.name for p in published} == published_reports(done.stdout)
    assert all(p.read_bytes().startswith(b"%PDF-1.4") for p in published)
    assert (output / "documents").is_dir() and len(list((output / "documents").glob("*.attempt*.pdf"))) == 3
    summary = (output / "nightly" / "run-2" / "summary.csv").read_text().splitlines()
    assert summary[0] == "region,rows,units,amount" and [row.split(",")[0] for row in summary[1:]] == [
        "emea", "americas", "apac", "total"]
    assert done.stderr == "", "headless, the libraries' logs go to the log file"
    assert "worker reports-1 stopped" in (output / "flow45-demo.log").read_text()


@pytest.mark.parametrize("day", AWKWARD_MOMENTS, ids=AWKWARD_MOMENTS.keys())
def test_the_demo_tells_the_same_story_on_awkward_days(demos, day):
    """The clock pinned at the moment (and ticking on): three runs, the nightly one for the latest 02:30
    tick before the moment, the monthly one it starts for its month, and the first, by hand, for the
    month before that; two published reports, however late after the moment the demo triggers (at
    23:59:30, a loaded machine's demo may reach its trigger after midnight). The nightly run's 06:00 timer, when still ahead, is reached by the
    demo's clock skipping ahead to it; when past, it fires at once."""
    moment, done = AWKWARD_MOMENTS[day], demos[day].result()
    assert done.returncode == 0, f"on {day}, the demo failed:\n" + done.stdout[-3000:] + done.stderr[-3000:]
    try:
        assert_the_story_on(moment, demos[day].folder, done)
    except AssertionError as exc:
        raise AssertionError(f"on {day} ({moment}): {exc}\n{done.stdout[-4000:]}") from None


def assert_the_story_on(moment: str, folder: Path, done: subprocess.CompletedProcess) -> None:
    assert_the_story_was_told(done.stdout)
    assert runs_in_summary(done.stdout) == ["1 monthly_report", "2 nightly_sales", "3 monthly_report"]
    now = dt.datetime.fromisoformat(moment.replace("Z", ""))
    nightly = now.replace(hour=2, minute=30, second=0) - dt.timedelta(days=0 if now.time() >= dt.time(2, 30) else 1)
    before = (nightly.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")  # the nightly run reports its month
    assert re.search(rf"querying sales for {before}\b", done.stdout)
    assert f"schedule {nightly:%Y-%m-%d} 02:30 UTC" in done.stdout
    published = {p.name for p in (folder / "flow45-demo-output" / "published").iterdir()}
    assert published == {f"report-{before}.pdf", f"report-{nightly:%Y-%m}.pdf"}
    due = nightly.replace(hour=6, minute=0)
    skipped = re.search(r"operator\s+run 2 morning waits until 06:00 UTC \((\S+) from now\) and nothing else can move: "
                        r"the demo's clock skips ahead to it", done.stdout)
    if now < due:
        assert skipped, "the timer is hours away: the demo's clock skips ahead to it"
        assert re.search(r"^06:0\d:\d\d\.\d{3}  timer\s+run 2 morning", done.stdout, re.MULTILINE), "it fires at 06:00"
    else:
        assert skipped is None, "06:00 has passed on the nightly run's day: the timer fires at once"
