"""A worker process for the fault tests: `python -m tests.faults.worker_proc URL ACKS SECONDS`.

It handles the workload's functions, sleeping SECONDS in each task, and appends one JSON line to
ACKS for every submit the bridge answered `ok`: the writes it was told are stored."""

from __future__ import annotations

import json
import logging
import sys
import time

from bridge.sdk import AmqpTransport, Worker
from bridge.sdk.run import run_forever


class RecordingTransport(AmqpTransport):
    def __init__(self, *args, acks, **kwargs):
        super().__init__(*args, **kwargs)
        self.acks = acks

    def request(self, message, message_id, timeout):
        reply = super().request(message, message_id, timeout)
        self._record(message, reply)
        return reply

    def request_async(self, message, message_id, timeout, callback):
        def recorded(reply, error):
            self._record(message, reply)
            callback(reply, error)

        super().request_async(message, message_id, timeout, recorded)

    def _record(self, message, reply):
        """The SDK sends a report either way (the waiting one after a lost connection)."""
        if message["type"] == "submit" and reply is not None and reply.ok:
            self.acks.write(json.dumps({"instance": message["instance"], "token": message["token"]}) + "\n")


def main(url: str, acks_path: str, seconds: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)
    acks = open(acks_path, "a", buffering=1)  # a line reaches the file before the next task starts
    transport = RecordingTransport(url, "reports", f"faults-{acks_path[-8:]}", acks=acks,
                                   reconnect_min=0.2, reconnect_max=2.0, resubscribe_interval=0.5)
    worker = Worker(transport, rpc_timeout=2.0, rpc_attempts=60, claim_attempts=60)

    @worker.handler("start")
    def start(task):
        time.sleep(seconds)
        return {"uri": "noop://start", "size": 0}

    @worker.handler("step")
    def step(task, prev):
        time.sleep(seconds)
        return {"uri": "noop://step", "size": prev["size"] + 1}

    run_forever(worker, concurrency=4)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
