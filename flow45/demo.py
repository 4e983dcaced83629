"""`flow45 demo`: the example workflows run end to end on the embedded default, no servers needed.

In-process workers claim, report progress and submit through the core; a scripted operator approves
the human task and undoes one instance, as a person would in the dashboard.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from pathlib import Path

from croniter import croniter

from flow45 import states as S
from flow45 import store
from flow45.clock import utcnow
from flow45.config import load_config
from flow45.db import connect
from flow45.errors import Flow45Error
from flow45.migrate import ensure_schema
from flow45.models import Outbox, TaskInstance
from flow45.settings import Settings, current_settings, use_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "config"
TEAM = "reports"
OPERATOR = "demo-operator"


def _work(task: str, function: str, inputs: dict, params: dict, attempt: int, report) -> dict:
    """What the example functions do: a little waiting, visible progress, an outcome."""
    for pct in (25, 50, 75):
        time.sleep(random.uniform(0.05, 0.15))
        report(pct, f"{function}: {pct}%")
    if function == "extract_sales":
        return {"uri": f"file:///data/sales-{params.get('month') or 'latest'}.parquet", "rows": 48213}
    if function == "render_pdf":
        return {"uri": inputs["sales"]["uri"].replace(".parquet", f".v{attempt}.pdf"), "pages": 12}
    if function == "publish_document":
        return {"uri": inputs["document"]["uri"].replace("/data/", "/published/"), "pages": inputs["document"]["pages"]}
    if function == "load_partition":
        region = task.removeprefix("load_")
        if attempt == 1 and region != "apac":
            raise RuntimeError("database connection reset (a transient failure, retried)")
        return {"region": region, "uri": f"file:///data/{region}.parquet", "rows": 1000}
    if function == "summarize_partitions":
        parts = [p for p in inputs.values() if p]
        return {"uri": "file:///data/summary.csv", "total_rows": sum(p["rows"] for p in parts), "partitions": parts}
    if function == "notify_team":
        return {"uri": "mailto:team@example.org", "pages": 1}
    raise Flow45Error(f"the demo has no worker for {function}")


def _worker(name: str, functions: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        grant = store.claim_next(TEAM, functions, name)
        if grant is None:
            time.sleep(0.05)
            continue
        row = TaskInstance.get_by_id(grant.instance)
        try:
            output = _work(
                row.task, row.function, grant.inputs or {}, grant.params or {}, grant.attempt,
                lambda pct, msg: store.progress(grant.instance, grant.token, pct, msg),
            )
            store.submit(grant.instance, grant.token, output)
        except Flow45Error:
            pass  # stale after an undo: the newer attempt is someone else's
        except Exception as exc:  # the worker's own failure: reported, retried by Flow45
            store.fail(grant.instance, grant.token, str(exc))


def _sweeper(stop: threading.Event) -> None:
    """Lease expiry and due retries, as the scheduler service does."""
    while not stop.is_set():
        store.release_due_retries()
        store.expire_leases()
        time.sleep(0.2)


def _print_event(event) -> None:
    move = f"{event.from_state or '-'} -> {event.to_state}" if event.to_state else ""
    where = f"run {event.run}" if event.run else event.team
    if event.instance:
        where += f" {TaskInstance.get_by_id(event.instance).task}"
    note = ""
    if isinstance(event.detail, dict):
        note = event.detail.get("reason") or event.detail.get("error") or ""
    print(f"{event.at:%H:%M:%S.%f}"[:-3] + f"  {event.kind:<8} {where:<26} {move:<24} {event.actor} {note}".rstrip(), flush=True)


def run_demo(db_path: Path, timeout: float = 60.0) -> int:
    """Run the demo headless; 0 when every run finished, 1 otherwise."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_url = f"sqlite:///{db_path}"
    use_settings(Settings(**{**current_settings().model_dump(), "database_url": db_url, "default_retry_delay": 1.0}))
    connect(db_url)
    ensure_schema()
    print(f"flow45 demo: store {db_path}, config {EXAMPLES}")
    store.deploy(load_config(EXAMPLES), actor=OPERATOR)

    monthly = store.trigger(TEAM, "monthly_report", {"month": "2026-10"}, actor=OPERATOR)
    tick = croniter("30 2 * * *", dt.datetime.now(dt.timezone.utc)).get_prev(dt.datetime)
    nightly = store.trigger(TEAM, "nightly_sales", actor="flow45-scheduler", trigger_kind="schedule", logical_time=tick)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_worker, args=(f"worker-{i}", functions, stop), daemon=True)
        for i, functions in enumerate(
            [["extract_sales", "render_pdf"], ["publish_document", "notify_team"],
             ["load_partition", "summarize_partitions"], ["load_partition"]], start=1
        )
    ] + [threading.Thread(target=_sweeper, args=(stop,), daemon=True)]
    for thread in threads:
        thread.start()

    after, approved, undone, deadline = 0, False, False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for event in store.list_events(after):
                _print_event(event)
                after = event.id
            approve = TaskInstance.get((TaskInstance.run == monthly) & (TaskInstance.task == "approve"))
            if approve.state == S.AVAILABLE:
                store.submit_human(approve.id, {"approved": True, "reviewer": OPERATOR, "comment": "looks right"}, actor=OPERATOR)
                approved = True
            run = store.get_run(monthly)
            if run.status == S.SUCCEEDED and not undone:
                render = TaskInstance.get((TaskInstance.run == monthly) & (TaskInstance.task == "render"))
                store.undo(render.id, "wrong logo on page 1: render again", actor=OPERATOR)
                undone = True
            finished = [store.get_run(r).status for r in (monthly, nightly)]
            if undone and all(status in S.FINISHED_RUN for status in finished):
                break
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
    for event in store.list_events(after):
        _print_event(event)
    return _summary(db_path, [monthly, nightly], approved, undone)


def _summary(db_path: Path, run_ids: list[int], approved: bool, undone: bool) -> int:
    print("\nsummary")
    ok = approved and undone
    for run_id in run_ids:
        view = store.get_run(run_id)
        ok = ok and view.status == S.SUCCEEDED
        print(f"  run {view.id} {view.workflow}: {view.status} ({', '.join(f'{k} {v}' for k, v in sorted(view.counts.items()))})")
    notices = Outbox.select().where(Outbox.kind == "undo").count()
    print(f"  human task approved: {'yes' if approved else 'no'}; undo done: {'yes' if undone else 'no'}; undo notices published: {notices}")
    print(f"  look around: FLOW45_DATABASE_URL=sqlite:///{db_path} flow45 runs")
    return 0 if ok else 1
