"""The message models are built on first use (defer_build): a process whose first messages arrive on
many threads at once (the bridge's committers, an SDK worker's threads) parses each of them as the
model says, none with a half-built model's or its base's validator ("extra inputs are not permitted")."""

from __future__ import annotations

import subprocess
import sys

FIRST_USE_ON_MANY_THREADS = """
import threading
from flow45.messages import Claim, Submit, Progress, worker_messages, operator_messages

messages = [
    (Claim, {"type": "claim", "instance": 1, "token": "t", "worker": "w"}),
    (Submit, {"type": "submit", "instance": 1, "token": "t", "output": {"ok": True}}),
    (Progress, {"type": "progress", "instance": 1, "token": "t", "percent": 50.0}),
]
start, failures = threading.Barrier(24), []

def first_use(n):
    model, body = messages[n % len(messages)]
    start.wait()
    try:
        parsed = worker_messages().validate_python(body) if n % 2 else model.model_validate(body)
        assert type(parsed) is model, type(parsed)
        parsed.model_dump()
        operator_messages()
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")

threads = [threading.Thread(target=first_use, args=(n,)) for n in range(24)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(failures)
"""


def test_the_first_messages_parsed_on_many_threads_at_once_are_each_parsed_as_their_model():
    for _ in range(3):  # each a fresh process: every model unbuilt at the barrier
        done = subprocess.run([sys.executable, "-c", FIRST_USE_ON_MANY_THREADS], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "[]"
