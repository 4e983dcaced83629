"""The worker: handlers per function name, N tasks at once, the same behaviour on every transport.

For each offer: claim (an RPC), ack the offer whether granted or stale, run the handler with
heartbeats renewing the lease, then submit its output, or fail (retryable unless PermanentError),
or skip. Undo notices go to the compensation handler and are acked after it returns.

A submit names the worker's functions (`next`): the bridge then claims a downstream attempt of the
same run for this worker in the submit's own transaction, and its answer carries it (eager
dispatch). That attempt runs in the same slot, without an offer and a claim on the way: a run goes
on depth first, at two messages and one commit a task instead of five and two. An offer in hand that
has waited for a slot longer than `eager_patience` seconds goes first instead: the submit does not
ask. `Worker(eager=False)` always takes work from the offer queues.

With a transport that sends without waiting (AmqpTransport.request_async), the claim goes out
from the transport's own thread as the offer arrives, and the report leaves the task thread free
at once: a task thread only runs granted tasks, and its one hand-over is the report. The worker's
slots (bridge/sdk/slots.py) keep what is in hand within `concurrency`.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from bridge.sdk.binding import Binding
from bridge.sdk.errors import PermanentError, TaskCancelled, TransportError
from bridge.sdk.heartbeat import Heartbeat
from bridge.sdk.outcome import logs, outcome, progress, refused_output
from bridge.sdk.slots import Slots
from bridge.sdk.task import Task
from bridge.sdk.transport import OFFER, Delivery, Subscription, Transport
from flow45.messages import Offer, Park, Reply, UndoNotice
from flow45.outage import Backoff

GRANT_ONLY = ("lease_expires_at", "timeout_at")  # what a granted attempt carries beyond its offer

log = logging.getLogger(__name__)

STALE = "stale"
_LEAVE = object()  # queued once per task thread when the worker stops


class _Job:
    """Work for a task thread. It holds a slot, freed when `fn` returns, unless `fn` returns True:
    then the answer to what it sent frees it."""

    __slots__ = ("fn", "args", "delivery", "unstarted")

    def __init__(self, fn: Callable[..., None], args: tuple, delivery: Delivery | None, *, unstarted: bool = False):
        self.fn, self.args = fn, args
        self.delivery = delivery  # requeued if `fn` fails before settling it
        self.unstarted = unstarted  # requeued instead, when the worker stops before it starts


class Worker:
    """Register handlers with `@worker.handler("function")` and `@worker.on_undo("function")`,
    then `run(concurrency=N)` (blocks until `stop()`), or `start()` … `stop()` … `join()`."""

    def __init__(
        self, transport: Transport, *, rpc_timeout: float = 10.0, rpc_attempts: int = 6,
        claim_attempts: int = 6, undo_retry_delay: float = 1.0, eager: bool = True, eager_patience: float = 1.0,
    ):
        self.transport = transport
        self.eager = eager
        self.eager_patience = eager_patience
        self.rpc_timeout = rpc_timeout
        self.rpc_attempts = rpc_attempts
        self.claim_attempts = claim_attempts
        self.undo_retry_delay = undo_retry_delay
        self._handlers: dict[str, Binding] = {}
        self._undo_handlers: dict[str, Callable[[UndoNotice], Any]] = {}
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()  # _Job, then _LEAVE
        self._request_async: Callable[..., None] | None = None
        self._threads: list[threading.Thread] = []
        self._heartbeat = Heartbeat(self._beat, on_exit=transport.thread_done)
        self._stopping = threading.Event()
        self._slots = Slots(self._begin, self._stopping)
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
            self._slots.open(concurrency)
            self._request_async = getattr(self.transport, "request_async", None)
            self._heartbeat.start()
            for index in range(concurrency):
                thread = threading.Thread(target=self._work, name=f"flow45-task-{index}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self.transport.open(subscription, self._arrived)
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
        for delivery in self._slots.drain():  # not started: someone else may take them
            _requeue(delivery)
        self._slots.wait_all_free()  # running handlers report, and claims and reports in flight are answered
        for _ in self._threads:
            self._jobs.put(_LEAVE)  # behind what is queued: each thread does those (or requeues them), then leaves
        for thread in self._threads:
            thread.join()
        while True:  # anything queued after the task threads left goes back
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _LEAVE and job.delivery is not None:
                _requeue(job.delivery)
        self._heartbeat.close()
        try:
            self.transport.close()
            self.transport.thread_done()
        finally:
            self._stopped.set()
            log.info("worker %s stopped", self.name)

    # ---- deliveries --------------------------------------------------------------------------

    def _arrived(self, delivery: Delivery) -> None:
        """A delivery from the transport (on its thread)."""
        if not self._slots.arrived(delivery):
            _requeue(delivery)  # stopping: someone else may take it

    def _begin(self, delivery: Delivery) -> bool:
        """Start on a delivery that holds a slot; False if it is done with already (and the slot free)."""
        try:
            if delivery.kind == OFFER:
                return self._offer(delivery)
            self._jobs.put(_Job(self._undo, (delivery,), delivery, unstarted=True))
            return True
        except Exception:  # noqa: BLE001 - the transport's thread must survive anything
            log.exception("unexpected error taking a %s of %s", delivery.kind, delivery.function)
            _requeue(delivery)
            return False

    # ---- offers: claim, then run -------------------------------------------------------------

    def _offer(self, delivery: Delivery) -> bool:
        """Claim the offer: from the transport's own thread when it can send without waiting (the
        task thread then gets only a granted task), else in a task thread. False when done with it."""
        try:
            offer = _parse(Offer, delivery.body)
        except ValidationError as exc:
            log.error("dropping a malformed offer on %s: %s", delivery.function, exc)
            delivery.nack(requeue=False)
            return False
        binding = self._handlers.get(offer.function)
        if binding is None:
            log.error("offer for %s arrived on %s, which has no handler; requeued", offer.function, delivery.function)
            delivery.nack(requeue=True)
            return False
        claim = {"type": "claim", "instance": offer.instance, "token": offer.token, "worker": self.name[:128]}
        message_id = uuid.uuid4().hex
        request_async = self._request_async
        if request_async is None:
            self._jobs.put(_Job(self._claim, (delivery, offer, binding, claim, message_id, 0), delivery, unstarted=True))
            return True
        answered = functools.partial(self._claim_answered, delivery, offer, binding, claim, message_id)
        try:
            request_async(claim, message_id, self.rpc_timeout, answered)
        except TransportError as exc:
            answered(None, exc)
        return True

    def _claim_answered(self, delivery: Delivery, offer: Offer, binding: Binding, claim: dict[str, Any],
                        message_id: str, reply: Reply | None, error: TransportError | None) -> None:
        """The first answer to a claim sent by `_offer` (on the transport's thread)."""
        if error is None:
            try:
                task = self._granted(delivery, offer, reply)
            except Exception:  # noqa: BLE001 - a bug here must not keep the slot forever
                log.exception("unexpected error taking the answer to the claim of task instance %s", offer.instance)
                _requeue(delivery)
                task = None
            if task is None:
                self._slots.release()
            else:
                self._jobs.put(_Job(self._run, (task, binding), None))
        elif self.claim_attempts > 1:
            log.warning("claim unanswered (%s); sending it again", error)
            self._jobs.put(_Job(self._claim, (delivery, offer, binding, claim, message_id, 1), delivery))
        else:
            log.warning("claim of task instance %s unanswered (%s); offer requeued", offer.instance, error)
            delivery.nack(requeue=True)
            self._slots.release()

    def _claim(self, delivery: Delivery, offer: Offer, binding: Binding, claim: dict[str, Any], message_id: str,
               tried: int) -> bool:
        """Claim in a task thread (again, after `tried` unanswered attempts), then run the task."""
        try:
            reply = self._request(claim, attempts=self.claim_attempts, message_id=message_id, tried=tried)
        except TransportError as exc:
            log.warning("claim of task instance %s unanswered (%s); offer requeued", offer.instance, exc)
            delivery.nack(requeue=True)
            return False
        task = self._granted(delivery, offer, reply)
        return task is not None and self._run(task, binding)

    def _granted(self, delivery: Delivery, offer: Offer, reply: Reply) -> Task | None:
        """Ack the offer, whatever the answer: the task to run if the claim was granted."""
        delivery.ack()
        if not reply.ok:
            level = logging.DEBUG if reply.code == STALE else logging.WARNING
            log.log(level, "claim of task instance %s refused (%s): %s", offer.instance, reply.code, reply.error)
            return None
        return Task(offer, reply.result or {}, self.name, self._progress, self._park)

    # ---- the task threads ------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while (job := self._jobs.get()) is not _LEAVE:  # blocks: an idle thread costs nothing
                kept = False
                try:
                    if job.unstarted and self._stopping.is_set():
                        _requeue(job.delivery)  # not started: someone else may take it
                    else:
                        kept = job.fn(*job.args)
                except Exception:  # noqa: BLE001 - a worker thread must survive anything
                    log.exception("unexpected error in %s", getattr(job.fn, "__name__", job.fn))
                    if job.delivery is not None:
                        _requeue(job.delivery)
                finally:
                    if not kept:
                        self._slots.release()
        finally:
            self.transport.thread_done()

    def _run(self, task: Task, binding: Binding) -> bool:
        """Run the handler and send its outcome; True if the slot stays held until the bridge answers."""
        with self._lock:
            self.active += 1
        self._heartbeat.add(task)
        try:
            message = outcome(task, binding)
        finally:
            self._heartbeat.remove(task)
            with self._lock:
                self.active -= 1
        if message is None:
            log.info("%r parked; whoever holds its callback key finishes it", task)
            return False
        if task.cancelled.is_set():
            log.info("%r is no longer current; its %s is not sent", task, message["type"])
            return False
        return self._report(task, message)

    # ---- reports: submit, fail, skip ---------------------------------------------------------

    def _report(self, task: Task, message: dict[str, Any]) -> bool:
        """Send the outcome. With a transport that sends without waiting, the task thread is free at
        once and the answer (on the transport's thread) frees the slot: True. Else it waits: False."""
        message_id = uuid.uuid4().hex
        if (self.eager and message["type"] == "submit" and not self._stopping.is_set()
                and self._slots.longest_wait() <= self.eager_patience):
            message["next"] = sorted(self._handlers)
        if self._request_async is None:
            return self._send_report(task, message, message_id)
        answered = functools.partial(self._report_answered, task, message, message_id)
        try:
            self._request_async(message, message_id, self.rpc_timeout, answered)
        except TransportError as exc:
            answered(None, exc)
        return True

    def _report_answered(self, task: Task, message: dict[str, Any], message_id: str, reply: Reply | None,
                         error: TransportError | None) -> None:
        """The first answer to a report sent by `_report` (on the transport's thread)."""
        if error is not None and self.rpc_attempts > 1:
            log.warning("%s unanswered (%s); sending it again", message["type"], error)
            self._jobs.put(_Job(self._send_report, (task, message, message_id, 1), None))
            return
        try:
            follow_up = self._reported(task, message, reply, error)
        except Exception:  # noqa: BLE001 - a bug here must not keep the slot forever
            log.exception("unexpected error taking the answer to the %s of %r", message["type"], task)
            follow_up = None
        if follow_up is not None:
            self._jobs.put(_Job(self._send_report, (task, follow_up, uuid.uuid4().hex), None))
            return
        if not self._take_next(reply):
            self._slots.release()

    def _send_report(self, task: Task, message: dict[str, Any], message_id: str, tried: int = 0) -> bool:
        """Send the outcome from a task thread, waiting for the answer; True if the slot goes on to an
        attempt the answer granted."""
        try:
            reply = self._request(message, attempts=self.rpc_attempts, message_id=message_id, tried=tried)
        except TransportError as exc:
            reply, error = None, exc
        else:
            error = None
        follow_up = self._reported(task, message, reply, error)
        if follow_up is not None:
            return self._send_report(task, follow_up, uuid.uuid4().hex)
        return self._take_next(reply)

    def _take_next(self, reply: Reply | None) -> bool:
        """Queue the downstream attempt a submit's answer granted (eager dispatch) to run in the slot
        the submitted task held; True if there is one."""
        grant = granted(reply)
        if not grant:
            return False
        try:
            offer = _parse(Offer, {k: v for k, v in grant.items() if k not in GRANT_ONLY})
        except ValidationError as exc:
            log.error("malformed attempt granted with a submit's answer (its lease will expire): %s", exc)
            return False
        binding = self._handlers.get(offer.function)
        if binding is None:
            log.error("attempt of %s granted, which has no handler here; its lease will expire", offer.function)
            return False
        task = Task(offer, {k: grant.get(k) for k in GRANT_ONLY}, self.name, self._progress, self._park)
        self._jobs.put(_Job(self._run, (task, binding), None))
        return True

    def _reported(self, task: Task, message: dict[str, Any], reply: Reply | None,
                  error: TransportError | None) -> dict[str, Any] | None:
        """Log the answer to a report; the fail to send next when the bridge refused the output."""
        kind = message["type"]
        if error is not None:
            log.error("%s of %r unanswered (%s); its lease will expire and the task be offered again", kind, task, error)
        elif reply.ok:
            log.debug("%s of %r done", kind, task)
        elif reply.code == STALE:
            task.cancelled.set()
            log.warning("%s of %r refused as stale: %s", kind, task, reply.error)
        elif kind == "submit" and reply.code == "invalid_message" and "next" in message and "next" in (reply.error or ""):
            log.warning("the bridge does not know eager dispatch (%s); submits go without `next` from now on", reply.error)
            self.eager = False
            return {k: v for k, v in message.items() if k != "next"}
        elif kind == "submit" and reply.code in ("invalid_output", "invalid_message"):
            # Refused for its output's type, or for a body the inbox will not parse (too big, too deep):
            # the handler would return it again, and unfailed the attempt would wait out its lease.
            log.error("output of %r refused: %s", task, reply.error)
            return refused_output(task, reply.error)
        else:
            log.error("%s of %r refused (%s): %s", kind, task, reply.code, reply.error)
        return None

    # ---- from the handler's thread, and heartbeats ---------------------------------------------

    def _progress(self, task: Task, percent: float | None, message: str | None, *, timeout: float | None = None,
                  checkpoint: Any = None) -> bool:
        unsent = logs(task) if task.log_unsent else {}
        try:
            reply = self._request(progress(task, percent, message, unsent, checkpoint), attempts=1, timeout=timeout)
        except TransportError as exc:
            log.warning("progress of %r unanswered: %s", task, exc)
            return True  # unknown, not refused
        if reply.ok:
            self._heartbeat.touched(task)
            if unsent == logs(task):  # not changed meanwhile by the handler's thread
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
        reply = self._request(park.model_dump(mode="json"), attempts=self.rpc_attempts)
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

    def _request(self, message: dict[str, Any], *, attempts: int, timeout: float | None = None,
                 message_id: str | None = None, tried: int = 0) -> Reply:
        """Send until answered, at most `attempts` times (`tried` of them done), always with the same message id."""
        message_id = message_id or uuid.uuid4().hex
        backoff: Backoff | None = None
        attempt = tried
        while True:
            if attempt:  # after an unanswered one
                backoff = backoff or Backoff(first=0.25, cap=5.0)
                backoff.wait()
            attempt += 1
            try:
                return self.transport.request(message, message_id, timeout or self.rpc_timeout)
            except TransportError as exc:
                if attempt >= attempts:
                    raise
                log.warning("%s unanswered (%s); sending it again", message["type"], exc)


def granted(reply: Reply | None) -> dict[str, Any] | None:
    """The downstream attempt a submit's answer granted (eager dispatch), as its JSON form, if any."""
    result = reply.result if reply is not None and reply.ok else None
    grant = result.get("next") if isinstance(result, dict) else None
    return grant or None


def _parse(model: type[BaseModel], body: bytes | dict) -> Any:
    if isinstance(body, (bytes, bytearray, str)):
        return model.model_validate_json(body)
    return model.model_validate(body)


def _requeue(delivery: Delivery) -> None:
    try:
        if not delivery.settled:
            delivery.nack(requeue=True)
    except Exception:  # noqa: BLE001
        log.exception("could not requeue a delivery")
