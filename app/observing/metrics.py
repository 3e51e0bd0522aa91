"""The metrics operators scrape at /metrics (UNDERSTUDY_METRICS): Prometheus's text format, every worker counted.

Each request's facts (app/http/facts.py) are counted when its response ends:
requests by door, route, model, status and backend, their latency, a
stream's time to its first event, tokens in and out, refusals by the rule
that refused, state-store failures and the proxy's upstream errors by kind;
open streams while they are open. The batch processor reports its items'
outcomes as it gives them (`batch_items`, the callback the composition root
hands it).

prometheus_client keeps each worker's values in files of a directory shared
by the workers when PROMETHEUS_MULTIPROC_DIR names one (gunicorn.conf.py sets
it up in the master, and tells the library when a worker dies), so a scrape
that reaches any worker sums them all; without it (an app in a test's
process), values are this process's own. prometheus_client is imported only
by a server with metrics on.

A request's labels are looked up once per set of values: the children of
each label set are kept together, and a model name is counted as the
catalogue's model it names, or `other` (a client's names must not make a
series each).

A request's counts are added up in memory, by its labels' values, and a
thread of the worker's own (started and stopped by the app's lifespan) writes
the sums every FLUSH_SECONDS, and a scrape, first, the sums of the worker it
reaches: writing each request's five values to the shared files as it ended
cost some 29 µs of a worker's CPU per request, a sixth of an echo reply. A
scrape so sees another worker's requests up to FLUSH_SECONDS late.
"""

from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import Scope

from app import internals
from app.http.facts import RequestFacts
from backends.catalogue import ModelCatalogue

#: The seconds a request's latency and a stream's first event fall between.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: The label of a model name the catalogue does not know.
OTHER_MODEL = "other"
#: The text format's media type, as Prometheus asks for it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: How often a worker writes the counts it has added up.
FLUSH_SECONDS = 1.0


#: A request's labels' values: door, route, model, status.
_Labels = tuple[str, str, str, int]


@dataclass(frozen=True)
class _Series:
    """The children one set of label values counts in."""

    requests: Any
    latency: Any
    first_event: Any
    input_tokens: Any
    output_tokens: Any


@dataclass
class _Tally:
    """One series' counts since they were last written: requests, tokens, and each histogram's buckets and sum."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))  # the last: +Inf
    latency_sum: float = 0.0
    first_event: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    first_event_sum: float = 0.0


class Metrics:
    """The server's metrics, in a registry of their own (an app per test may make its own)."""

    def __init__(self, catalogue: ModelCatalogue, backend: str) -> None:
        self.catalogue = catalogue
        self.backend = backend
        self.registry = CollectorRegistry()
        by_request = ["door", "route", "model", "status", "backend"]
        self._requests = Counter("understudy_requests", "Requests answered.", by_request, registry=self.registry)
        self._latency = Histogram(
            "understudy_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response.",
            ["door", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._first_event = Histogram(
            "understudy_time_to_first_event_seconds",
            "Seconds from a streamed request's arrival to its first event.",
            ["door", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._open_streams = Gauge(
            "understudy_open_streams", "Streams being sent.", multiprocess_mode="livesum", registry=self.registry
        )
        tokens = ["model"]
        self._input_tokens = Counter("understudy_input_tokens", "Input tokens.", tokens, registry=self.registry)
        self._output_tokens = Counter("understudy_output_tokens", "Output tokens.", tokens, registry=self.registry)
        self._refusals = Counter(
            "understudy_refusals", "Requests a rule refused, by rule: model, version, rate_limit.", ["rule"],
            registry=self.registry,
        )  # fmt: skip
        self._upstream_errors = Counter(
            "understudy_upstream_errors", "The proxy's upstream errors, by kind.", ["kind"], registry=self.registry
        )
        self._batch_items = Counter(
            "understudy_batch_items", "Message Batch requests given an outcome, by outcome.", ["state"],
            registry=self.registry,
        )  # fmt: skip
        self._store_errors = Counter(
            "understudy_state_store_errors", "State-store failures requests met, by kind: full, unavailable.",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self._series: dict[_Labels, _Series] = {}
        self._models: dict[str, str] = {}
        self._tallies: dict[_Labels, _Tally] = {}
        self._lock = threading.Lock()  # the tallies, between the loop that adds and the thread that writes
        self._stopped = threading.Event()
        self._writer: threading.Thread | None = None

    # ------------------------------------------------------------ lifespan
    def start(self) -> None:
        """Write the counts every FLUSH_SECONDS, on a thread of this worker's, until `stop`."""
        self._stopped.clear()
        self._writer = threading.Thread(target=self._write_now_and_then, name="metrics-writer", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        """Stop writing now and then, and write what is left."""
        self._stopped.set()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        self.flush()

    # ----------------------------------------------------------- observer
    def started(self, facts: RequestFacts, scope: Scope) -> None:
        if facts.streaming:
            self._open_streams.inc()

    def ended(self, facts: RequestFacts) -> None:
        if facts.streaming and facts.status is not None:
            self._open_streams.dec()
        if facts.status is None:
            return  # no answer was sent: nothing to count but what it met
        labels = (facts.door or "", facts.route or "unrouted", self._model_label(facts.model), facts.status)
        duration = facts.duration or 0.0
        with self._lock:
            tally = self._tallies.get(labels)
            if tally is None:
                tally = self._tallies[labels] = _Tally()
            tally.requests += 1
            tally.latency[bisect.bisect_left(LATENCY_BUCKETS, duration)] += 1  # the first bucket it is <= to
            tally.latency_sum += duration
            if facts.first_event is not None:
                tally.first_event[bisect.bisect_left(LATENCY_BUCKETS, facts.first_event)] += 1
                tally.first_event_sum += facts.first_event
            tally.input_tokens += facts.input_tokens or 0
            tally.output_tokens += facts.output_tokens or 0
        if facts.refused_by is not None:
            self._refusals.labels(facts.refused_by).inc()
        if facts.store_error is not None:
            self._store_errors.labels(facts.store_error).inc()
        if facts.upstream_error is not None:
            self._upstream_errors.labels(facts.upstream_error).inc()

    # ------------------------------------------------------ what backends report
    def batch_items(self, state: str, count: int) -> None:
        """The batch processor gave `count` requests the outcome `state`."""
        if count:
            self._batch_items.labels(state).inc(count)

    # ------------------------------------------------------------- serving
    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format: all workers' values, when they share a directory (this one's
        written first, others' as of their last write)."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            every_worker = CollectorRegistry()
            MultiProcessCollector(every_worker)
            return generate_latest(every_worker)
        return generate_latest(self.registry)

    def flush(self) -> None:
        """Write the counts added up since the last write."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        for labels, tally in tallies.items():
            series = self._series_of(labels)
            series.requests.inc(tally.requests)
            if tally.input_tokens:
                series.input_tokens.inc(tally.input_tokens)
            if tally.output_tokens:
                series.output_tokens.inc(tally.output_tokens)
            internals.add_to_histogram(series.latency, tally.latency, tally.latency_sum)
            if any(tally.first_event):
                internals.add_to_histogram(series.first_event, tally.first_event, tally.first_event_sum)

    def _write_now_and_then(self) -> None:
        while not self._stopped.wait(FLUSH_SECONDS):
            self.flush()

    def _series_of(self, labels: _Labels) -> _Series:
        series = self._series.get(labels)
        if series is None:
            door, route, model, status = labels
            series = self._series[labels] = _Series(
                self._requests.labels(door, route, model, str(status), self.backend),
                self._latency.labels(door, route),
                self._first_event.labels(door, model),
                self._input_tokens.labels(model),
                self._output_tokens.labels(model),
            )
        return series

    def _model_label(self, name: str | None) -> str:
        if not name:
            return ""
        label = self._models.get(name)
        if label is None:
            found = self.catalogue.find(name)
            if found is None:
                return OTHER_MODEL  # not remembered: a client's names must not grow this table either
            label = self._models[name] = found.id
        return label
