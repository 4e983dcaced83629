"""The worker: handlers per function name, N tasks at once, the same behaviour on every transport.

For each offer: claim (an RPC), ack the offer whether granted or stale, run the handler with
heartbeats renewing the lease, then submit its output, or fail (retryable unless PermanentError),
or skip. Undo notices go to the compensation handler and are acked after it returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from bridge.sdk.binding import Binding, dump_output
from bridge.sdk.errors import PermanentError, SkipTask, TaskCancelled, TransportError
from bridge.sdk.heartbeat import Heartbeat
from bridge.sdk.task import MAX_TEXT, Task
from bridge.sdk.transport import OFFER, Delivery, Subscription, Transport
from flow45 import wire
from flow45.messages import Claim, Fail, Offer, Park, Progress, Reply, Skip, Submit, UndoNotice
from flow45.outage import Backoff

log = logging.getLogger(__name__)

STALE = "stale"
_LEAVE = object()  # queued once per task thread when the worker stops


class Worker:
    """Register handlers with `@worker.handler("function")` and `@worker.on_undo("function")`,
    then `run(concurrency=N)` (blocks until `stop()`), or `start()` … `stop()` … `join()`."""

    def __init__(
        self, transport: Transport, *, rpc_timeout: float = 10.0, rpc_attempts: int = 6,
        claim_attempts: int = 6, undo_retry_delay: float = 1.0,
    ):
        self.transport = transport
        self.rpc_timeout = rpc_timeout
        self.rpc_attempts = rpc_attempts
        self.claim_attempts = claim_attempts
        self.undo_retry_delay = undo_retry_delay
        self._handlers: dict[str, Binding] = {}
        self._undo_handlers: dict[str, Callable[[UndoNotice], Any]] = {}
        self._deliveries: queue.Queue[Any] = queue.Queue()  # deliveries, then _LEAVE
        self._threads: list[threading.Thread] = []
        self._heartbeat = Heartbeat(self._beat, on_exit=transport.thread_done)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._started = False
        self._lock = threading.RLock()  # re-entrant: stop() may run in a signal handler
        self._shutdown_thread: threading.Thread | None = None
        self.active = 0  # handlers running now

    @property
    def name(self) -> str:
        return self.transport.worker_name

    # ---- registration ----------------------------------------------------------------------

    def handler(self, function: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate `fn(task, **inputs)`: inputs by parameter name, validated into their annotations;
        returns the output (a pydantic model or a dict)."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            if self._started:
                raise RuntimeError("register handlers before the worker starts")
            if function in self._handlers:
                raise ValueError(f"function {function!r} already has a handler")
            self._handlers[function] = Binding.of(function, fn)
            return fn

        return register

    def on_undo(self, function: str) -> Callable[[Callable[[UndoNotice], Any]], Callable[[UndoNotice], Any]]:
        """Decorate `fn(notice)`, the compensation for an undone output of `function`; the notice is
        acked when it returns. Without one, the function's undo notices are not consumed."""

        def register(fn: Callable[[UndoNotice], Any]) -> Callable[[UndoNotice], Any]:
            if self._started:
                raise RuntimeError("register undo handlers before the worker starts")
            if function in self._undo_handlers:
                raise ValueError(f"function {function!r} already has an undo handler")
            self._undo_handlers[function] = fn
            return fn

        return register

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, concurrency: int = 1) -> None:
        """Begin consuming; returns at once. `concurrency` handlers may run at the same time."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not self._handlers and not self._undo_handlers:
            raise RuntimeError("the worker has no handlers: decorate functions with @worker.handler(name)")
        subscription = Subscription(tuple(sorted(self._handlers)), tuple(sorted(self._undo_handlers)), concurrency)
        with self._lock:
            if self._started or self._stopping.is_set():
                raise RuntimeError("the worker was already started (or stopped)")
            self._started = True
            self._heartbeat.start()
            for index in range(concurrency):
                thread = threading.Thread(target=self._work, name=f"flow45-task-{index}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self.transport.open(subscription, self._deliveries.put)
        log.info("worker %s of team %s: %s at most %d at once", self.name, self.transport.team,
                 ", ".join(subscription.functions + tuple(f"{f} (undo)" for f in subscription.undo_functions)),
                 concurrency)

    def run(self, concurrency: int = 1) -> None:
        """start(), then wait until stop() (from a signal handler or another thread) has finished."""
        self.start(concurrency)
        self.join()

    def stop(self) -> None:
        """Stop cleanly: no new claims, running handlers finish and report, then the transport closes.
        Returns at once (safe in a signal handler); `join()` waits for the end."""
        with self._lock:
            self._stopping.set()
            if not self._started:
                self._stopped.set()
                return
            if self._shutdown_thread is None:
                self._shutdown_thread = threading.Thread(target=self._shutdown, name="flow45-stop", daemon=True)
                self._shutdown_thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the worker has stopped; True if it has. Wakes regularly so signals are handled."""
        if not self._started and not self._stopped.is_set():
            raise RuntimeError("the worker was not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return False
            self._stopped.wait(left)
        return True

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _shutdown(self) -> None:
        try:
            self.transport.stop_consuming()
        except Exception:  # noqa: BLE001
            log.exception("stopping consumption failed")
        for _ in self._threads:
            self._deliveries.put(_LEAVE)  # behind what is queued: each thread requeues those, then leaves
        for thread in self._threads:
            thread.join()
        while True:  # anything delivered after the task threads left goes back
            try:
                delivery = self._deliveries.get_nowait()
                if delivery is not _LEAVE:
                    delivery.nack(requeue=True)
            except queue.Empty:
                break
            except Exception:  # noqa: BLE001
                log.exception("could not requeue a delivery")
        self._heartbeat.close()
        try:
            self.transport.close()
            self.transport.thread_done()
        finally:
            self._stopped.set()
            log.info("worker %s stopped", self.name)

    # ---- the task threads ------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while (delivery := self._deliveries.get()) is not _LEAVE:  # blocks: an idle thread costs nothing
                if self._stopping.is_set():
                    delivery.nack(requeue=True)  # not started: someone else may take it
                    continue
                try:
                    if delivery.kind == OFFER:
                        self._offer(delivery)
                    else:
                        self._undo(delivery)
                except Exception:  # noqa: BLE001 - a worker thread must survive anything
                    log.exception("unexpected error handling a %s of %s", delivery.kind, delivery.function)
                    if not delivery.settled:
                        delivery.nack(requeue=True)
        finally:
            self.transport.thread_done()

    def _offer(self, delivery: Delivery) -> None:
        try:
            offer = _parse(Offer, delivery.body)
        except ValidationError as exc:
            log.error("dropping a malformed offer on %s: %s", delivery.function, exc)
            delivery.nack(requeue=False)
            return
        binding = self._handlers.get(offer.function)
        if binding is None:
            log.error("offer for %s arrived on %s, which has no handler; requeued", offer.function, delivery.function)
            delivery.nack(requeue=True)
            return
        claim = Claim(type="claim", instance=offer.instance, token=offer.token, worker=self.name[:128])
        try:
            reply = self._request(claim, attempts=self.claim_attempts)
        except TransportError as exc:
            log.warning("claim of task instance %s unanswered (%s); offer requeued", offer.instance, exc)
            delivery.nack(requeue=True)
            return
        delivery.ack()
        if not reply.ok:
            level = logging.DEBUG if reply.code == STALE else logging.WARNING
            log.log(level, "claim of task instance %s refused (%s): %s", offer.instance, reply.code, reply.error)
            return
        task = Task(offer, reply.result or {}, self.name, self._progress, self._park)
        self._run(task, binding)

    def _run(self, task: Task, binding: Binding) -> None:
        with self._lock:
            self.active += 1
        self._heartbeat.add(task)
        try:
            outcome = self._call(task, binding)
        finally:
            self._heartbeat.remove(task)
            with self._lock:
                self.active -= 1
        if outcome is None:
            log.info("%r parked; whoever holds its callback key finishes it", task)
            return
        if task.cancelled.is_set():
            log.info("%r is no longer current; its %s is not sent", task, outcome.type)
            return
        self._report(task, outcome)

    def _call(self, task: Task, binding: Binding) -> Submit | Fail | Skip | None:
        """What to send for the handler's outcome; None when it parked the attempt and returned."""
        common = {"instance": task.instance, "token": task.token}
        try:
            result = binding.fn(task, **binding.arguments(task.inputs))
            if task.callback_key is not None:
                return None
        except SkipTask as skip:
            return Skip(type="skip", reason=skip.reason[:MAX_TEXT], **common)
        except PermanentError as exc:
            log.error("%r failed permanently: %s", task, exc)
            return Fail(type="fail", error=_describe(exc), retryable=False, **common, **_logs(task))
        except Exception as exc:  # noqa: BLE001 - the handler's failure is the task's
            log.exception("%r failed", task)
            return Fail(type="fail", error=_describe(exc), retryable=True, **common, **_logs(task))
        try:
            output = dump_output(result)
            wire.dumps(output)  # NaN and ±Infinity are not JSON: refused here, before anything is sent
            return Submit(type="submit", output=output, **common, **_logs(task))
        except Exception as exc:  # noqa: BLE001 - not JSON: trying again returns the same
            log.error("%r returned %s, which is not JSON: %s", task, type(result).__name__, exc)
            return Fail(type="fail", error=f"the handler's return value is not JSON: {_describe(exc)}"[:MAX_TEXT],
                        retryable=False, **common)

    def _report(self, task: Task, outcome: Submit | Fail | Skip) -> None:
        try:
            reply = self._request(outcome, attempts=self.rpc_attempts)
        except TransportError as exc:
            log.error("%s of %r unanswered (%s); its lease will expire and the task be offered again",
                      outcome.type, task, exc)
            return
        if reply.ok:
            log.debug("%s of %r done", outcome.type, task)
            return
        if reply.code == STALE:
            task.cancelled.set()
            log.warning("%s of %r refused as stale: %s", outcome.type, task, reply.error)
        elif outcome.type == "submit" and reply.code == "invalid_output":
            log.error("output of %r refused: %s", task, reply.error)
            refused = Fail(type="fail", instance=task.instance, token=task.token, retryable=False,
                           error=f"output refused: {reply.error}"[:MAX_TEXT])
            self._report(task, refused)
        else:
            log.error("%s of %r refused (%s): %s", outcome.type, task, reply.code, reply.error)

    def _progress(self, task: Task, percent: float | None, message: str | None, *, timeout: float | None = None) -> bool:
        logs = _logs(task) if task.log_unsent else {}
        progress = Progress(type="progress", instance=task.instance, token=task.token, percent=percent, message=message,
                            **logs)
        try:
            reply = self._request(progress, attempts=1, timeout=timeout)
        except TransportError as exc:
            log.warning("progress of %r unanswered: %s", task, exc)
            return True  # unknown, not refused
        if reply.ok:
            self._heartbeat.touched(task)
            if logs == _logs(task):  # not changed meanwhile by the handler's thread
                task.log_unsent = False
            return True
        if reply.code == STALE:
            task.cancelled.set()
            log.warning("%r is no longer current: %s", task, reply.error)
            return False
        log.error("progress of %r refused (%s): %s", task, reply.code, reply.error)
        return True

    def _park(self, task: Task, deadline_seconds: float | None) -> str:
        park = Park(type="park", instance=task.instance, token=task.token, deadline_seconds=deadline_seconds)
        reply = self._request(park, attempts=self.rpc_attempts)
        if reply.ok:
            return reply.result["callback_key"]
        if reply.code == STALE:
            task.cancelled.set()
            raise TaskCancelled(f"{task!r} is no longer current: {reply.error}")
        raise RuntimeError(f"park of {task!r} refused ({reply.code}): {reply.error}")

    def _beat(self, task: Task) -> None:
        self._progress(task, None, None, timeout=min(self.rpc_timeout, Heartbeat.interval(task)))

    def _undo(self, delivery: Delivery) -> None:
        try:
            notice = _parse(UndoNotice, delivery.body)
        except ValidationError as exc:
            log.error("dropping a malformed undo notice on %s: %s", delivery.function, exc)
            delivery.nack(requeue=False)
            return
        handler = self._undo_handlers.get(delivery.function)
        if handler is None:
            delivery.nack(requeue=True)
            return
        try:
            handler(notice)
        except PermanentError as exc:
            log.error("undo of task instance %s (%s) failed permanently, notice dropped: %s",
                      notice.instance, notice.function, exc)
            delivery.nack(requeue=False)
        except Exception:  # noqa: BLE001
            log.exception("undo of task instance %s (%s) failed; notice requeued", notice.instance, notice.function)
            self._stopping.wait(self.undo_retry_delay)
            delivery.nack(requeue=True)
        else:
            delivery.ack()

    # ---- requests --------------------------------------------------------------------------

    def _request(self, message: BaseModel, *, attempts: int, timeout: float | None = None) -> Reply:
        """Send until answered, at most `attempts` times, always with the same message id."""
        body = message.model_dump(mode="json")
        message_id = uuid.uuid4().hex
        backoff = Backoff(first=0.25, cap=5.0)
        for attempt in range(1, attempts + 1):
            try:
                return self.transport.request(body, message_id, timeout or self.rpc_timeout)
            except TransportError as exc:
                if attempt == attempts:
                    raise
                log.warning("%s unanswered (%s); sending it again", body["type"], exc)
                backoff.wait()
        raise AssertionError("unreachable")


def _parse(model: type[BaseModel], body: bytes | dict) -> Any:
    if isinstance(body, (bytes, bytearray, str)):
        return model.model_validate_json(body)
    return model.model_validate(body)


def _logs(task: Task) -> dict[str, str]:
    """The log link and tail the handler gave (`Task.log`), for the message that carries them."""
    return {name: value for name, value in (("log_url", task.log_url), ("log_tail", task.log_tail)) if value is not None}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:MAX_TEXT]
