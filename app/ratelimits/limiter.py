"""The rate limiter: token buckets in the shared store, taken from as a request arrives, corrected as it ends.

As the real API does it (its rate limits page): each limit is a bucket that
holds a minute's worth and refills continuously; a Messages request takes one
request, its input tokens and its `max_tokens` of output tokens, all or none;
at its end the output is corrected to the tokens it produced, and the input to
what counts towards ITPM: `input_tokens` and `cache_creation_input_tokens`, and
`cache_read_input_tokens` only for the model classes configured to count them
(the page's † models). The input estimate leaves out the longest cacheable
prefix, as if it were read from the cache; the correction takes what was
written. count_tokens and the Message Batches routes have request limits of
their own (each its own bucket, shared by every model).

Whose buckets: each API key's (hashed, within its scope), each scope's, or
the server's (`per`), one set per model class for Messages; and the `total`,
when configured, which every request also takes from. The buckets live in the
state store (`StateStore.take_tokens`), so every worker and every host that
shares the store shares them. A request refused is a 429 `rate_limit_error`
in the API's words, with `retry-after` and the headers (headers.py).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.ratelimits.config import SUBJECT_NAME, Limits, RateLimits, key_hash
from app.ratelimits.headers import Reading, ratelimit_headers, refusal, retry_after
from app.ratelimits.leases import GiveBack, Leases
from backends.catalogue import Model, ModelCatalogue
from backends.echo.caching import breakpoints_of, has_breakpoints
from backends.state import Bucket, BucketLevels, StateStore, current_scope
from backends.tokens import CLASSIC
from backends.wire import ApiError, client_key

logger = logging.getLogger("understudy")

REQUESTS, INPUT, OUTPUT = "requests", "input_tokens", "output_tokens"
#: The group of a model the catalogue lacks (UNDERSTUDY_ANY_MODEL).
UNLISTED = "unlisted"
#: How many (key, scope, model) combinations the limiter remembers the limits of before it starts over.
REMEMBERED = 10_000
#: How long the corrections thread gathers corrections before it writes them.
COALESCE_SECONDS = 0.05


class RateLimited(ApiError):
    """A request over a limit: a 429 rate_limit_error with retry-after and the rate limit headers."""

    def __init__(self, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(429, message, headers=headers)


@dataclass(frozen=True)
class Admission:
    """A request let through: the headers its answer carries, and what it took, to be corrected at its end."""

    headers: Mapping[str, str]
    #: Each subject taken from, with the buckets as taken (their costs the estimates).
    taken: tuple[tuple[str, tuple[Bucket, ...]], ...] = ()
    input_estimate: int = 0
    output_estimate: int = 0
    count_cache_reads: bool = False


@dataclass(frozen=True)
class _Layer:
    """A set of buckets a request takes from: whose (for the 429's words), the store's subject, the limits."""

    who: str
    subject: str
    limits: Limits


class RateLimiter:
    """Admits requests against the configured limits and settles them at their end."""

    def __init__(self, rules: RateLimits, store: StateStore, catalogue: ModelCatalogue) -> None:
        self.store = store
        self.catalogue = catalogue
        self._lines = {info["id"]: info.get("line") for info in catalogue.models}
        self.rules = dataclasses.replace(rules, models=self._models_by_id(rules.models))
        self._layers: dict[tuple[str, str, str, str], tuple[_Layer, ...]] = {}
        self._models: dict[str, tuple[Model | None, str | None, str]] = {}
        self._leases = Leases()
        self._corrections = _Corrections(store, due=self._leases.expired)
        _LIMITERS.add(self)

    # ------------------------------------------------------------------------------ admitting
    def admit_message(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> Admission | None:
        """Take a Messages request's request, input and output tokens; None when no limit applies to it."""
        model, line, group = self._model(body["model"])
        layers = self._layers_for("messages", group, headers, model=model.id if model else None, line=line)
        if not layers:
            return None
        count_cache_reads = bool(layers[0].limits.count_cache_reads)
        input_estimate = 0
        if any(layer.limits.itpm for layer in layers):
            input_estimate = _input_estimate(body, model, count_cache_reads)
        output_estimate = int(body.get("max_tokens") or 0)
        plan = [
            (layer, _buckets(layer.limits.rpm, layer.limits.itpm, layer.limits.otpm, input_estimate, output_estimate))
            for layer in layers
        ]
        return self._take(plan, body["model"], input_estimate, output_estimate, count_cache_reads)

    def admit_count_tokens(self, headers: Mapping[str, str]) -> Admission | None:
        """Take a count_tokens request from its own request limit."""
        layers = self._layers_for("count_tokens", "count_tokens", headers)
        return self._take([(layer, _buckets(layer.limits.count_tokens_rpm)) for layer in layers]) if layers else None

    def admit_batches(self, headers: Mapping[str, str]) -> Admission | None:
        """Take a Message Batches request (any of its routes) from their request limit."""
        layers = self._layers_for("batches", "batches", headers)
        return self._take([(layer, _buckets(layer.limits.batches_rpm)) for layer in layers]) if layers else None

    def _take(
        self,
        plan: Sequence[tuple[_Layer, tuple[Bucket, ...]]],
        model: str | None = None,
        input_estimate: int = 0,
        output_estimate: int = 0,
        count_cache_reads: bool = False,
    ) -> Admission:
        """Take from each layer in turn; one that refuses gives the others back and is the 429."""
        taken: list[tuple[str, tuple[Bucket, ...]]] = []
        readings: list[Reading] = []
        for layer, buckets in plan:
            taken_all, found = self._take_layer(layer.subject, buckets)
            if not taken_all:
                self._give_back(taken)
                given_back = [reading._replace(level=reading.level + reading.bucket.cost) for reading in readings]
                headers = {**ratelimit_headers([*given_back, *found]), "retry-after": str(retry_after(found))}
                raise RateLimited(refusal(found, who=layer.who, model=model), headers)
            taken.append((layer.subject, buckets))
            readings += found
        return Admission(ratelimit_headers(readings), tuple(taken), input_estimate, output_estimate, count_cache_reads)

    def _take_layer(self, subject: str, buckets: tuple[Bucket, ...]) -> tuple[bool, list[Reading]]:
        """Take `buckets` from this process's lease of them (leases.py), or from the store, with a lease when one
        fits; whether they were taken, and their readings."""
        found = self._leases.admit(subject, buckets)
        if found is not None:
            return True, found
        extra = self._leases.wanted(subject, buckets)
        if extra is not None:
            with_lease = [bucket.costing(bucket.cost + more) for bucket, more in zip(buckets, extra, strict=True)]
            levels = self.store.take_tokens(subject, with_lease)
            if levels.taken:
                return True, self._hold(subject, buckets, extra, levels)
        levels = self.store.take_tokens(subject, buckets)  # near the limit: the request's costs alone
        if levels.taken:
            return True, self._hold(subject, buckets, [0.0] * len(buckets), levels)
        return False, [Reading(bucket, level, levels.now) for bucket, level in zip(buckets, levels.levels, strict=True)]

    def _hold(
        self, subject: str, buckets: tuple[Bucket, ...], extra: Sequence[float], levels: BucketLevels
    ) -> list[Reading]:
        readings, replaced = self._leases.hold(subject, buckets, extra, levels)
        if replaced is not None:
            self._corrections.put(*replaced)
        else:
            self._corrections.start()  # the thread that gives back a lease that outlives its use
        return readings

    def _give_back(self, taken: Sequence[tuple[str, tuple[Bucket, ...]]]) -> None:
        for subject, buckets in taken:
            self.store.take_tokens(subject, [bucket.costing(-bucket.cost) for bucket in buckets], force=True)

    # ------------------------------------------------------------------------------ settling
    def settle(self, admission: Admission | None, usage: Mapping[str, Any] | None) -> None:
        """Correct a Messages request's estimates to its `usage` (None: it failed, and produced no output).

        The corrections are written by a thread of the limiter's own, off the request's path: the answer is
        made, and its client need not wait for the bookkeeping."""
        if admission is None:
            return
        if usage is None:
            counted_input, output = admission.input_estimate, 0
        else:
            counted_input = (usage.get("input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0)
            if admission.count_cache_reads:
                counted_input += usage.get("cache_read_input_tokens") or 0
            output = usage.get("output_tokens") or 0
        corrections = {INPUT: counted_input - admission.input_estimate, OUTPUT: output - admission.output_estimate}
        for subject, buckets in admission.taken:
            corrected = tuple(
                bucket.costing(corrections[bucket.name]) for bucket in buckets if corrections.get(bucket.name)
            )
            if corrected:
                self._corrections.put(subject, corrected)

    def flush(self) -> None:
        """Give back every lease, and wait until every correction so far is written."""
        self._corrections.put_all(self._leases.release())
        self._corrections.flush()

    def close(self) -> None:
        """Give back every lease, write the corrections still waiting, and stop the thread that writes them."""
        self._corrections.put_all(self._leases.release())
        self._corrections.close()

    def forget_parents(self) -> None:
        """In a child just forked: what the parent leased and has to correct is the parent's to settle."""
        self._leases.forget()
        self._corrections.forget()

    # ------------------------------------------------------------------------------ whose buckets
    def _layers_for(
        self, kind: str, group: str, headers: Mapping[str, str], *, model: str | None = None, line: str | None = None
    ) -> tuple[_Layer, ...]:
        """The layers a request of `kind` (messages, count_tokens, batches) in `group` takes from, remembered."""
        key, scope = client_key(headers), current_scope()
        remembered = (key, scope, kind, group)  # in this process's memory only: the key is hashed for the store
        layers = self._layers.get(remembered)
        if layers is None:
            if len(self._layers) >= REMEMBERED:
                self._layers.clear()
            hashed, rules = key_hash(key), self.rules
            limits = rules.limits(model=model, model_class=line, scope=scope, hashed_key=hashed)
            who = {"key": f"{scope}/key.{hashed[:32]}", "scope": f"{scope}/scope", "server": "server"}[rules.per]
            candidates = [(who, limits)]
            if rules.total is not None:
                candidates.append(("total", rules.total))
            suffix = f"m.{group}" if kind == "messages" else kind
            layers = tuple(
                _Layer(name, f"{name}/{suffix}", layer_limits)
                for name, layer_limits in candidates
                if _limits_of(kind, layer_limits)
            )
            self._layers[remembered] = layers
        return layers

    def _model(self, name: str) -> tuple[Model | None, str | None, str]:
        """The model `name` names, its class (line) and whose buckets its requests share (remembered)."""
        found = self._models.get(name)
        if found is None:
            model = self.catalogue.find(name)
            line = self._lines.get(model.id) if model is not None else None
            found = (model, line, _group(model.id if model is not None else None, line, self.rules.models))
            if len(self._models) < REMEMBERED:
                self._models[name] = found
        return found

    def _models_by_id(self, models: Mapping[str, Limits]) -> dict[str, Limits]:
        """The `models` entries by model class or model id (an alias resolved); an unknown name is a ValueError."""
        lines = {line for line in self._lines.values() if line}
        resolved: dict[str, Limits] = {}
        for name, limits in models.items():
            model = self.catalogue.find(name)
            if name in lines:
                resolved[name] = limits
            elif model is not None:
                resolved[model.id] = limits
            else:
                classes = ", ".join(sorted(lines))
                raise ValueError(f"models: {name!r} is neither a model class ({classes}) nor a model of the catalogue")
        return resolved


#: Every limiter of this process, each told after a fork() that its parent's leases, corrections and thread are not
#: the child's (as the standard library's `random` and `logging` reset theirs), rather than checking on every call.
_LIMITERS: weakref.WeakSet[RateLimiter] = weakref.WeakSet()


def _forget_parents() -> None:
    for limiter in _LIMITERS:
        limiter.forget_parents()


os.register_at_fork(after_in_child=_forget_parents)


class _Corrections:
    """Forced takes (corrections), written by one thread per process, started with the first of them (in the
    worker, after gunicorn's fork: a thread does not survive a fork).

    A request's path only appends its corrections to a list; the thread looks every COALESCE_SECONDS and writes
    each subject's as one take, its costs summed, with what `due` gives back then (the leases that ran out). Under
    load, one write stands for many requests, and a bucket is corrected at most that much later than its request
    ended; and no request waits on waking the thread (a queue's put wakes a waiting reader: some 30 µs of a
    request's latency, when every request settled)."""

    def __init__(self, store: StateStore, due: Callable[[], list[GiveBack]]) -> None:
        self.store = store
        self.due = due
        self.pending: collections.deque[tuple[str, tuple[Bucket, ...]]] = collections.deque()
        self._lock = threading.Lock()  # one writer of the corrections at a time: the thread, or a flush
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, subject: str, buckets: tuple[Bucket, ...]) -> None:
        self.start()
        self.pending.append((subject, buckets))  # a deque's append is atomic: no lock on a request's path

    def put_all(self, corrections: list[GiveBack]) -> None:
        for subject, buckets in corrections:
            self.put(subject, buckets)

    def start(self) -> None:
        """Start the thread, unless it runs."""
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._stopping = threading.Event()
                    self._thread = threading.Thread(target=self._run, name="rate-limit-corrections", daemon=True)
                    self._thread.start()

    def flush(self) -> None:
        """Write every correction so far, now."""
        self._write()

    def close(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(timeout=5)
            self._thread = None
        self._write()

    def forget(self) -> None:
        """In a child just forked: the parent's corrections are the parent's to write, its thread is not here."""
        self.pending.clear()
        self._lock = threading.Lock()
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(COALESCE_SECONDS):
            self.pending.extend(self.due())
            self._write()

    def _write(self) -> None:
        with self._lock:
            summed: dict[str, dict[str, Bucket]] = {}
            while self.pending:
                subject, buckets = self.pending.popleft()
                known = summed.setdefault(subject, {})
                for bucket in buckets:
                    before = known.get(bucket.name)
                    known[bucket.name] = bucket if before is None else before.costing(before.cost + bucket.cost)
            try:
                for subject, by_name in summed.items():
                    self.store.take_tokens(subject, list(by_name.values()), force=True)
            except ApiError as error:  # the answers are made: a store that fails now costs only the corrections
                logger.warning("rate limits: corrections were lost (%s)", error.message)
            except Exception:
                logger.exception("rate limits: corrections failed")


def _limits_of(kind: str, limits: Limits) -> bool:
    """Whether `limits` limit requests of `kind`."""
    if kind == "messages":
        return bool(limits.rpm or limits.itpm or limits.otpm)
    return bool(limits.count_tokens_rpm if kind == "count_tokens" else limits.batches_rpm)


def _group(model_id: str | None, line: str | None, models: Mapping[str, Limits]) -> str:
    """Whose Messages buckets a model's requests share: its own, if configured; else its class's (its line's)."""
    if model_id is None:
        return UNLISTED
    name = model_id if model_id in models or not line else line
    return name if SUBJECT_NAME.fullmatch(name) else key_hash(name)[:32]


def _buckets(
    rpm: int | None, itpm: int | None = None, otpm: int | None = None, inputs: int = 0, outputs: int = 0
) -> tuple[Bucket, ...]:
    """The buckets of the limits set (costs: one request, `inputs`, `outputs`), each holding a minute's worth and
    refilled continuously."""
    wanted = ((REQUESTS, rpm, 1), (INPUT, itpm, inputs), (OUTPUT, otpm, outputs))
    return tuple(Bucket(name, limit, limit / 60, cost) for name, limit, cost in wanted if limit)


def _input_estimate(body: Mapping[str, Any], model: Model | None, count_cache_reads: bool) -> int:
    """The input tokens a request is expected to count towards ITPM: all of them, but the longest cacheable prefix
    (taken to be read from the cache) when cache reads do not count."""
    tokenizer = model.tokenizer if model is not None else CLASSIC
    tokens = tokenizer.count_input(body)
    if count_cache_reads or not has_breakpoints(body):
        return tokens
    minimum = model.min_cache_tokens if model is not None else 1024
    cacheable = [point.tokens for point in breakpoints_of(body, body["model"], tokenizer) if point.tokens >= minimum]
    return tokens - max(cacheable, default=0)
