"""What /metrics and the inspector cost the echo backend: `python bench/metrics.py` (or `--quick`).

Three Understudy servers (`gunicorn wsgi:app`, echo, journal off as by default,
as many workers each, started afresh each round) that differ only in:
- `plain`: neither metrics nor an admin key;
- `metrics`: UNDERSTUDY_METRICS=true (with the admin key it needs), nobody scraping: every request is counted,
  in prometheus_client's multi-process files;
- `admin`: UNDERSTUDY_ADMIN_KEY set, nobody looking at the inspector: the admin routes and the page exist.

In interleaved rounds, the order reversed each round (ABBA: whatever drifts during a run falls on all alike),
closed-loop throughput (wrk, 16 keep-alive connections on one thread) and the serving workers' CPU time per
request. Each round starts its three servers afresh: how fast one CPython process runs this app depends on where
its objects happen to lie in memory (its hash seed, its address-space layout, what was allocated before the app),
by as much as the goal measures. Under callgrind, with the hash seed fixed and no address randomisation, 1,110
unrelated objects allocated before the app was built made the same request cost 3.6% more instructions (1.393
against 1.345 million), and two servers of one configuration, side by side, ran 2–7% apart for as long as
they ran. A run that kept one server of each for all its rounds measured that luck as often as the settings;
a server per round draws anew each time, and the median over the rounds sets the draws against each other.

The goals (issue 23), on the median over the rounds of each ratio to `plain`: metrics at least 0.95; the
admin key with nobody looking, nothing measurable (within the rounds' own spread). It reports and saves the
numbers (bench/results/metrics-*.json); it never fails on speed. Only 127.0.0.1 traffic; bounded in time.
"""

from __future__ import annotations

import statistics
import sys

import servers
from load import message_request, run_wrk
from tools import ToolMissing, ensure_wrk

GOAL_RATIO = 0.95
CONNECTIONS = 16
ADMIN_KEY = "bench-admin-key"
SETTINGS = {
    "plain": {},
    "metrics": {"UNDERSTUDY_METRICS": "true", "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY},
    "admin": {"UNDERSTUDY_ADMIN_KEY": ADMIN_KEY},
}


def measure(wrk: str, rounds: int, seconds: float) -> dict:
    workers = servers.default_workers()
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    cpu_us: dict[str, list[float]] = {name: [] for name in SETTINGS}
    errors = 0
    request = message_request()
    for round_number in range(rounds):
        started = [
            servers.ConfiguredServer(name, {"WEB_CONCURRENCY": str(workers), **env}) for name, env in SETTINGS.items()
        ]
        try:
            servers.start_all(started)
            for server in started:  # warm-up
                errors += run_wrk(wrk, server.port, request, connections=CONNECTIONS, seconds=1).errors
            for server in started if round_number % 2 == 0 else started[::-1]:
                cpu_before = server.cpu_seconds()
                result = run_wrk(wrk, server.port, request, connections=CONNECTIONS, seconds=seconds)
                rates[server.name].append(result.rate)
                cpu_us[server.name].append((server.cpu_seconds() - cpu_before) / max(1, result.requests) * 1e6)
                errors += result.errors
        finally:
            for server in started:
                server.stop()
        print(
            f"round {round_number + 1}/{rounds}: "
            + ", ".join(f"{name} {rates[name][-1]:,.0f} req/s" for name in SETTINGS),
            flush=True,
        )
    ratios = {
        name: [on / off for on, off in zip(rates[name], rates["plain"], strict=True)] for name in ("metrics", "admin")
    }
    return {
        "workers": workers,
        "rounds": rounds,
        "seconds": seconds,
        "rates": rates,
        "ratios": ratios,
        "ratio": {name: statistics.median(values) for name, values in ratios.items()},
        "rps": {name: statistics.median(values) for name, values in rates.items()},
        "cpu_us": {name: statistics.median(values) for name, values in cpu_us.items()},
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    options = servers.round_options(argv, __doc__, default_rounds=6)
    rounds = options.rounds
    seconds = 2.0 if options.quick else 10.0
    try:
        wrk = ensure_wrk(install=not options.no_install)
    except ToolMissing as missing:
        print(f"bench: {missing}", file=sys.stderr)
        return 3
    result = measure(wrk, rounds, seconds)
    print(f"\necho, journal off, {result['workers']} workers each; {rounds} rounds of {seconds:.0f} s, medians")
    print(f"{'server':<10}{'req/s':>10}{'CPU µs/req':>12}{'÷ plain':>10}")
    for name in SETTINGS:
        ratio = result["ratio"].get(name, 1.0)
        print(f"{name:<10}{result['rps'][name]:>10.0f}{result['cpu_us'][name]:>12.0f}{ratio:>10.3f}")
    verdict = "met" if result["ratio"]["metrics"] >= GOAL_RATIO else "MISSED"
    for name, what in (("metrics", "metrics on / off"), ("admin", "admin key set, nobody looking / not set")):
        low, high = min(result["ratios"][name]), max(result["ratios"][name])
        print(f"{what} (median of rounds): {result['ratio'][name]:.3f} (rounds {low:.3f}–{high:.3f})")
    print(f"metrics: goal >= {GOAL_RATIO}: {verdict}; errors: {result['errors']}")
    servers.save_results("metrics", result, quick=options.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
