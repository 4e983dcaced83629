"""No-op SDK workers for the end-to-end benchmark; writes one timing line per offer, per attempt granted
with a submit's answer (eager dispatch), per handler started and per submit.

    python benchmarks/noop_workers.py AMQP_URL CONCURRENCY TIMINGS_FILE [eager|offers]
"""

from __future__ import annotations

import json
import sys
import time

from bridge.sdk import AmqpTransport, Worker, run_forever
from bridge.sdk import worker as worker_module

url, concurrency, timings_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
eager = sys.argv[4:] != ["offers"]
timings = open(timings_path, "w", buffering=1)
original_offer, original_report = worker_module.Worker._offer, worker_module.Worker._report
original_take_next, original_run = worker_module.Worker._take_next, worker_module.Worker._run


def timed_offer(self, delivery):
    body = json.loads(delivery.body)
    timings.write(json.dumps(["offer", body["run"], body["task"], time.time()]) + "\n")
    return original_offer(self, delivery)


def timed_report(self, task, outcome):
    timings.write(json.dumps(["submit", task.offer.run, task.offer.task, time.time()]) + "\n")
    return original_report(self, task, outcome)


def timed_take_next(self, reply):
    if grant := worker_module.granted(reply):
        timings.write(json.dumps(["granted", grant["run"], grant["task"], time.time()]) + "\n")
    return original_take_next(self, reply)


def timed_run(self, task, binding):
    timings.write(json.dumps(["start", task.offer.run, task.offer.task, time.time()]) + "\n")
    return original_run(self, task, binding)


worker_module.Worker._offer, worker_module.Worker._report = timed_offer, timed_report
worker_module.Worker._take_next, worker_module.Worker._run = timed_take_next, timed_run
worker = Worker(AmqpTransport(url, "bench", f"noop-{concurrency}"), eager=eager)


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
