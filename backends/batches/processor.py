"""The background work of the server's own Message Batches: one thread per worker, answering requests.

Each gunicorn worker runs one BatchProcessor (started and stopped with the
worker, by the app's lifespan). Over and over it looks at the batches that
have not ended and, for each:
- past its `expires_at`: the requests not answered become `expired`;
- canceling: the requests not being answered become `canceled`;
- otherwise: it claims a run of the requests that are due (all of them, or,
  with a pace, a share growing evenly across it) and answers them one by one,
  first checking the request's params as POST /v1/messages would (the check
  the composition root gives it, from openapi.yaml), then with the backend's
  `create_message`: a message is `succeeded`, an ApiError `errored` with the
  error body the API would have sent;
- and when every request has its result, the batch ends.
Claims are leases (store.py), renewed while a run is being answered (a run
stops there if its batch was canceled or has expired meanwhile) and handed
back when the worker stops, so the workers share a big batch and one killed
mid-run loses nothing.

The processor looks at every scope's batches, and works on each inside its
scope (`in_scope`): the backend's scripted sequences and prompt caches, and the
journal entries it writes, are the batch's scope's, as they would have been for
its requests sent one by one.

With the journal on, every request answered gets an entry once its result is
kept: `POST /v1/messages/batches/{batch id}/requests/{custom_id}`, with the
request's params as its body, the status the answer would have had, and the
scripted rule that answered. Requests canceled or expired were never answered
and have none.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backends.batches.store import Answer, BatchStore, Claimed, StoredBatch
from backends.exchange import MessageRequest, Reply
from backends.state import StateStore, StoreUnavailable, in_scope
from backends.wire import JSON, RULE_HEADER, ApiError, ConnectionAbort, compact_json, error_body, new_id

logger = logging.getLogger("understudy")

#: Requests claimed at a time: small enough to share a batch out between workers, large enough to cost little.
CLAIM_SIZE = 200
#: How long a processor with nothing to do waits before looking again (a batch this worker creates wakes it).
IDLE_SECONDS = 0.2


def journal_path(batch_id: str, custom_id: str) -> str:
    """The path a batch request's journal entry is filed under."""
    return f"/v1/messages/batches/{batch_id}/requests/{custom_id}"


class BatchProcessor:
    """Answers the requests of running batches on a thread of its own, sharing the work through the store."""

    def __init__(
        self,
        store: BatchStore,
        answer: Callable[[MessageRequest], Reply],
        check: Callable[[Mapping[str, Any], Mapping[str, str]], None],
        *,
        lease_seconds: float = 10.0,
        journal: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        when_idle: Callable[[], None] = lambda: None,
        on_outcome: Callable[[str, int], None] | None = None,
    ) -> None:
        self.store = store
        #: The backend's create_message.
        self.answer = answer
        #: Raises the ApiError POST /v1/messages would answer a malformed request with (given the batch's headers).
        self.check = check
        self.lease_seconds = lease_seconds
        self.journal = journal
        self.clock = clock
        #: Run each time the processor has answered what there was and goes idle (the composition root gives the
        #: memory the answers used back to the system).
        self.when_idle = when_idle
        #: Told how many requests this processor gave each outcome (succeeded, errored, canceled, expired), as it
        #: gives them (the composition root counts them in the metrics).
        self.on_outcome = on_outcome or (lambda outcome, count: None)
        self.name = f"{os.getpid()}-{new_id('worker')}"
        self._claims = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start answering, on a daemon thread."""
        with self._starting:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="understudy-batches", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the request being answered; what this worker claimed but did not answer is handed back."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Look for work now rather than at the next idle check (starting, if nothing started the processor yet).

        A server with a lifespan (gunicorn's asgi worker) starts it when the worker starts; one served
        through a WSGI adapter has none, and starts it with its first batch.
        """
        if not self._stopping.is_set() and (self._thread is None or not self._thread.is_alive()):
            self.start()
        self._wake.set()

    def _run(self) -> None:
        worked = False
        while not self._stopping.is_set():
            try:
                busy = self.step()
            except StoreUnavailable:
                busy = False  # logged where it was met; tried again once the store is back
            except Exception:
                logger.exception("batch processing failed; trying again")
                busy = False
            if busy:
                worked = True
                continue
            if worked:
                worked = False
                self.when_idle()
            self._sweep()
            self._wake.wait(IDLE_SECONDS)
            self._wake.clear()

    def _sweep(self) -> None:
        """Idle work: let go of what the downloads of a worker that died held."""
        try:
            self.store.sweep_downloads(self.clock())
        except StoreUnavailable:
            pass  # logged where it was met
        except Exception:
            logger.exception("sweeping the batches' downloads failed; trying again")

    # ------------------------------------------------------------------- work
    def step(self) -> bool:
        """One look at every running batch; whether any request was answered."""
        answered = False
        for batch in self.store.running():
            if self._stopping.is_set():
                break
            with in_scope(batch.scope):
                answered = self._step_batch(batch) or answered
        return answered

    def _step_batch(self, batch: StoredBatch) -> bool:
        """Answer a run of the batch's requests, or close it out and end it; whether any request was answered."""
        now = self.clock()
        if batch.unanswered and now < batch.expires_at and batch.status == "in_progress":
            return self._answer_run(batch)
        if batch.unanswered:
            outcome = "expired" if now >= batch.expires_at else "canceled"
            self.on_outcome(outcome, self.store.close_out(batch, outcome, now))
        self.store.finish(batch, now)  # once the requests still being answered elsewhere are done
        return False

    def _answer_run(self, batch: StoredBatch) -> bool:
        """Claim a run of the batch's due requests and answer them; whether there were any."""
        self._claims += 1
        token = f"{self.name}-{self._claims}"
        now = self.clock()
        claimed = self.store.claim(batch, token, now=now, lease_until=now + self.lease_seconds, limit=CLAIM_SIZE)
        if not claimed:
            return False
        answered: dict[int, tuple[Answer, JSON]] = {}  # by position: each result, and its journal entry
        renew_at = now + self.lease_seconds / 3
        try:
            for request in claimed:
                if self._stopping.is_set():
                    break
                if self.clock() >= renew_at:
                    renew_at = self.clock() + self.lease_seconds / 3
                    self.store.renew(batch, token, self.clock() + self.lease_seconds)
                    if not self._still_running(batch):
                        break  # canceled or expired meanwhile: the rest are handed back, to be closed out
                answered[request.position] = self._answer_one(batch, request)
                # Let the worker's other threads run: this one never blocks, and a thread that blocks (the event
                # loop, on every socket call) would otherwise wait up to the GIL's switch interval, 5 ms, each time
                # it wants the GIL back, and a message round trip takes several: 4 ms became 5 s under a batch.
                time.sleep(0)
            kept = self.store.complete(batch, token, [answer for answer, _ in answered.values()])
        finally:
            self.store.release(batch, token)
        for outcome, count in Counter(answer.outcome for answer in kept).items():
            self.on_outcome(outcome, count)
        self._write_journal([answered[answer.position][1] for answer in kept])
        return True

    def _still_running(self, batch: StoredBatch) -> bool:
        now = self.store.get(batch.id)
        return now is not None and now.status == "in_progress" and self.clock() < now.expires_at

    def _answer_one(self, batch: StoredBatch, request: Claimed) -> tuple[Answer, JSON]:
        """One request's result, and its journal entry."""
        params = json.loads(request.params)
        request_id = new_id("req")
        headers: Mapping[str, str] = {}
        try:
            self.check(params, batch.headers)
            reply = self.answer(MessageRequest(params, batch.headers, custom_id=request.custom_id))
        except StoreUnavailable:
            raise  # not the request's fault: the run is handed back, to be answered once the store is back
        except ApiError as error:
            headers, status = error.headers, error.status
            result: JSON = {"type": "errored", "error": error_body(error, request_id)}
        except Exception as failure:
            if not isinstance(failure, ConnectionAbort):
                logger.exception("answering a batch request failed")
            status = 500
            result = {"type": "errored", "error": error_body(ApiError(500, "Internal server error"), request_id)}
        else:
            headers, status = reply.headers, 200
            result = {"type": "succeeded", "message": batched(reply.body)}
        entry = {
            "at": self.clock(),
            "request_id": request_id,
            "method": "POST",
            "path": journal_path(batch.id, request.custom_id),
            "query": "",
            "headers": batch.headers,
            "body": params,
            "status": status,
            "rule": headers.get(RULE_HEADER),
            "batch_id": batch.id,
            "custom_id": request.custom_id,
        }
        return Answer(request.position, result["type"], compact_json(result)), entry

    def _write_journal(self, entries: Sequence[JSON]) -> None:
        if self.journal is None:
            return
        for entry in entries:
            try:
                self.journal.add_entry(entry)
            except Exception:
                logger.exception("could not write a journal entry for a batch request")


def batched(message: Mapping[str, Any]) -> JSON:
    """A message as a batch result carries it: its usage billed at the batch tier."""
    usage = message.get("usage")
    if not isinstance(usage, Mapping):
        return dict(message)
    return {**message, "usage": {**usage, "service_tier": "batch"}}
