"""No-op SDK workers for the end-to-end benchmark; writes one timing line per offer, per attempt granted
with a submit's answer (eager dispatch), per handler started and per submit. The lines are written
ten times a second, not one write each: a write per line was 5-8 % of the worker's measured CPU.

    python benchmarks/noop_workers.py AMQP_URL CONCURRENCY TIMINGS_FILE [eager|offers] [TEAM]
"""

from __future__ import annotations

import json
import sys
import threading
import time

from bridge.sdk import AmqpTransport, Worker, run_forever
from bridge.sdk import worker as worker_module

url, concurrency, timings_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
eager = sys.argv[4:5] != ["offers"]
team = sys.argv[5] if len(sys.argv) > 5 else "bench"
timings_file = open(timings_path, "w")
lines: list[str] = []  # appended by any thread (atomic); taken and written by the flusher


def note(kind: str, run: int, task: str) -> None:
    lines.append(json.dumps([kind, run, task, time.time()]) + "\n")


writing = threading.Lock()  # the flusher and the last call at exit must not take the same lines


def write_lines() -> None:
    with writing:
        taken = len(lines)
        timings_file.write("".join(lines[:taken]))
        del lines[:taken]
        timings_file.flush()


def flush_forever() -> None:
    while True:
        time.sleep(0.1)
        write_lines()


threading.Thread(target=flush_forever, name="timings", daemon=True).start()
original_offer, original_report = worker_module.Worker._offer, worker_module.Worker._report
original_take_next, original_run = worker_module.Worker._take_next, worker_module.Worker._run


def timed_offer(self, delivery):
    body = json.loads(delivery.body)
    note("offer", body["run"], body["task"])
    return original_offer(self, delivery)


def timed_report(self, task, outcome):
    note("submit", task.offer.run, task.offer.task)
    return original_report(self, task, outcome)


def timed_take_next(self, reply):
    if grant := worker_module.granted(reply):
        note("granted", grant["run"], grant["task"])
    return original_take_next(self, reply)


def timed_run(self, task, binding):
    note("start", task.offer.run, task.offer.task)
    return original_run(self, task, binding)


worker_module.Worker._offer, worker_module.Worker._report = timed_offer, timed_report
worker_module.Worker._take_next, worker_module.Worker._run = timed_take_next, timed_run
worker = Worker(AmqpTransport(url, team, f"noop-{concurrency}"), eager=eager)


@worker.handler("start")
def start(task):
    return {"uri": "noop://start", "size": 0}


@worker.handler("step")
def step(task, prev):
    return {"uri": "noop://step", "size": 1}


@worker.handler("join")
def join(task, **parts):
    return {"uri": "noop://join", "size": len(parts)}


run_forever(worker, concurrency=concurrency)
write_lines()
