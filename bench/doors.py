"""The doors against the first-party route, on one server: `python bench/doors.py` (or `--quick`).

One Understudy (echo, `gunicorn wsgi:app` as shipped) is measured in interleaved rounds, each door beside the
first-party `POST /v1/messages` in the same round, so that this machine's noise falls on both alike:
- throughput, closed-loop (wrk): the same echo asked through each door (Bedrock's InvokeModel, Vertex AI's
  rawPredict, the OpenAI-compatible chat completions, and the first-party API under Bedrock Mantle's and
  Google Cloud's prefixes), each run beside a first-party run of its own, as the median over the rounds of
  door / first-party (goal: at least 0.9 each);
- a Bedrock stream's first event (AWS event-stream) against a first-party stream's (server-sent events), paced
  on one connection, as a ratio of medians (goal: at most 1.2).
It reports and saves the numbers (bench/results/doors-*.json); it never fails on speed. Only 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys

import servers
from load import API_KEY, Answer, Request, alternating, message_request, run_wrk
from tools import ToolMissing, ensure_wrk

GOAL_THROUGHPUT = 0.9
GOAL_FIRST_EVENT = 1.2
TEXT = "Hello, Claude"
BEARER = (("content-type", "application/json"), ("authorization", f"Bearer {API_KEY}"))
VERTEX = "/v1/projects/p/locations/us-east5/publishers/anthropic/models"


def _json(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _messages(max_tokens: int = 100) -> dict:
    return {"max_tokens": max_tokens, "messages": [{"role": "user", "content": TEXT}]}


def bedrock(*, stream: bool = False) -> Request:
    """InvokeModel (or, streamed, InvokeModelWithResponseStream) as AnthropicBedrock sends it with an API key."""
    if stream:  # as the first-party stream below: the longest reply the API allows, on a model with room for it
        path = "/model/anthropic.claude-opus-5-5/invoke-with-response-stream"
        return Request("POST", path, _json({"anthropic_version": "2026-10-21", **_messages(128_000)}), BEARER)
    path = "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    return Request("POST", path, _json({"anthropic_version": "bedrock-2023-05-31", **_messages()}), BEARER)


def first_party_under(prefix: str) -> Request:
    """POST /v1/messages, as the first-party door's request, under a mounted prefix."""
    request = message_request()
    return Request(request.method, prefix + request.path, request.body, request.headers)


DOORS = {
    "bedrock": bedrock(),
    "vertex": Request(
        "POST",
        f"{VERTEX}/claude-sonnet-4-5@20250929:rawPredict",
        _json({"anthropic_version": "vertex-2023-10-16", **_messages()}),
        BEARER,
    ),
    "openai": Request(
        "POST",
        "/v1/chat/completions",
        _json({"model": "claude-sonnet-4-5", **_messages()}),
        BEARER,
    ),
    "mantle": first_party_under("/anthropic"),
    "google-cloud": first_party_under("/v1/projects/p/locations/global/workspaces/w/invoke"),
}


async def first_events(port: int, pairs: int) -> tuple[list[float], list[float], int]:
    """Alternate a first-party and a Bedrock stream of the same reply on one connection, 10 ms apart: the time to
    each one's first body bytes."""
    sse = message_request(stream=True).raw()

    def whole(raw: bytes, answer: Answer) -> bool:
        return raw is not sse or b"event: message_stop" in answer.body

    return await alternating(port, sse, bedrock(stream=True).raw(), pairs=pairs, whole=whole)


def main(argv: list[str] | None = None) -> int:
    options = servers.round_options(argv, __doc__, default_rounds=5)
    rounds = options.rounds
    seconds, pairs = (2, 20) if options.quick else (8, 200)
    try:
        wrk = ensure_wrk(install=not options.no_install)
    except ToolMissing as missing:
        print(missing, file=sys.stderr)
        return 3
    server = servers.understudy()
    servers.start_all([server])
    rates: dict[str, list[float]] = {name: [] for name in DOORS}
    baselines: dict[str, list[float]] = {name: [] for name in DOORS}
    errors = 0
    try:
        for warm in (message_request(), *DOORS.values()):
            errors += run_wrk(wrk, server.port, warm, connections=16, seconds=1).errors
        for round_number in range(rounds):
            # Each door beside a first-party run of its own, in turn first and second: the machine's drift
            # within a round falls on both sides of every ratio alike.
            for position, (name, request) in enumerate(DOORS.items()):
                pair = [(baselines[name], message_request()), (rates[name], request)]
                for measured, sent in pair if (round_number + position) % 2 else pair[::-1]:
                    result = run_wrk(wrk, server.port, sent, connections=16, seconds=seconds)
                    measured.append(result.rate)
                    errors += result.errors
            print(
                f"round {round_number + 1}/{rounds}: "
                + ", ".join(f"{n} {rates[n][-1] / baselines[n][-1]:.2f}" for n in DOORS)
            )
        first_party, door, stream_errors = asyncio.run(first_events(server.port, pairs))
    finally:
        server.stop()
    ratios = {
        name: statistics.median(a / b for a, b in zip(rates[name], baselines[name], strict=True)) for name in DOORS
    }
    first_event_ratio = statistics.median(door) / statistics.median(first_party)
    print(f"\n{'door':<14}{'req/s':>10}{'first-party':>13}{'ratio (median of rounds)':>26}  goal >= {GOAL_THROUGHPUT}")
    for name, ratio in ratios.items():
        verdict = "met" if ratio >= GOAL_THROUGHPUT else "MISSED"
        door_rate, baseline = statistics.median(rates[name]), statistics.median(baselines[name])
        print(f"{name:<14}{door_rate:>10.0f}{baseline:>13.0f}{ratio:>26.2f}  {verdict}")
    print(
        f"\nfirst event, p50: first-party SSE {statistics.median(first_party) * 1000:.2f} ms, Bedrock event-stream "
        f"{statistics.median(door) * 1000:.2f} ms: {first_event_ratio:.2f}x (goal <= {GOAL_FIRST_EVENT}: "
        f"{'met' if first_event_ratio <= GOAL_FIRST_EVENT else 'MISSED'})"
    )
    print(f"errors: {errors + stream_errors}")
    figures = {
        "rates": rates,
        "first_party_rates": baselines,
        "ratios": ratios,
        "first_events": {"first-party": first_party, "bedrock": door},
    }
    servers.save_results("doors", figures)
    return 1 if errors + stream_errors else 0


if __name__ == "__main__":
    sys.exit(main())
