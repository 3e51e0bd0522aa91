"""The proxy against a hostile upstream: `python bench/hostile_upstream.py` (`--seconds N` bounds each case).

The proxy backend (one worker, default settings) in front of
tests/fault_upstream.py, which offers it, as fast as it reads:
- **huge-body**: a non-streamed answer that declares 2 GB;
- **endless-event**: a stream whose second event never ends.
For each, one client call (its timeout: the bound), while the worker's
resident memory and CPU time are sampled every 50 ms; a case ends when the
client has its answer and the worker has been idle for a second, or at the
bound. It prints the worker's RSS before, at its peak and at the end, the CPU
seconds the case cost, and what the client got. It never fails on the figures.

`--repo DIR` measures the gateway of another checkout (the code before a
change, say); the fault upstream is always this checkout's. Only 127.0.0.1
traffic; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import servers

FAULT_UPSTREAM = servers.REPO / "tests" / "fault_upstream.py"
GATEWAY_KEY = "bench-gateway-key"
CASES = {"huge-body": False, "endless-event": True}  # the fault, and whether the call streams
SAMPLE_EVERY = 0.05
IDLE_FOR = 1.0


def call(port: int, model: str, stream: bool, timeout: float, outcome: dict[str, str]) -> None:
    """One call to the gateway; `outcome` gets what came back (or how it failed)."""
    body = {"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    headers = {"x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("POST", "/v1/messages", body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        last = text.strip().rsplit("data: ", 1)[-1]
        outcome["answer"] = f"{response.status} {json.loads(last).get('error', {}).get('message', '')}"
        connection.close()
    except (OSError, ValueError, http.client.HTTPException) as error:
        outcome["answer"] = f"no answer ({type(error).__name__})"
    outcome["seconds"] = f"{time.monotonic() - started:.1f}"


def measure(gateway: Any, model: str, stream: bool, bound: float) -> dict[str, object]:
    """One case: the call in a thread, the worker sampled until the case is over."""
    (worker,) = gateway.worker_pids()
    outcome: dict[str, str] = {}
    rss_before, cpu_before = servers.rss_bytes(worker), servers.cpu_seconds(worker)
    client = threading.Thread(target=call, args=(gateway.port, model, stream, bound, outcome), daemon=True)
    started = time.monotonic()
    client.start()
    peak, cpu, idle_since = rss_before, cpu_before, time.monotonic()
    while time.monotonic() - started < bound:
        time.sleep(SAMPLE_EVERY)
        peak = max(peak, servers.rss_bytes(worker))
        now_cpu = servers.cpu_seconds(worker)
        if now_cpu > cpu:
            cpu, idle_since = now_cpu, time.monotonic()
        if not client.is_alive() and time.monotonic() - idle_since >= IDLE_FOR:
            break
    client.join(1)
    return {
        "case": model,
        "rss_mb_before": round(rss_before / 1e6, 1),
        "rss_mb_peak": round(peak / 1e6, 1),
        "rss_mb_after": round(servers.rss_bytes(worker) / 1e6, 1),
        "cpu_seconds": round(servers.cpu_seconds(worker) - cpu_before, 2),
        "busy_at_the_bound": time.monotonic() - idle_since < IDLE_FOR,
        "client": f"{outcome.get('answer', 'still waiting')} after {outcome.get('seconds', f'{bound:.0f}+')} s",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="bound on each case (default 30)")
    parser.add_argument("--repo", type=Path, default=servers.REPO, help="the checkout whose gateway is measured")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.repo.resolve()))  # before bench/, whose backends.py is not the package
    from app.launcher.server_process import ServerProcess, free_port  # the chosen checkout's

    port = free_port()
    upstream = subprocess.Popen([sys.executable, str(FAULT_UPSTREAM), str(port)], stdout=subprocess.PIPE, text=True)
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == "ready"
    env = {"UNDERSTUDY_BACKEND": "proxy", "UNDERSTUDY_UPSTREAM_URL": f"http://127.0.0.1:{port}"}
    env |= {"UNDERSTUDY_UPSTREAM_API_KEY": "sk-bench-upstream", "UNDERSTUDY_API_KEYS": GATEWAY_KEY}
    print(f"gateway: {args.repo.resolve()}")
    try:
        for model, stream in CASES.items():
            with ServerProcess(env, workers=1) as gateway:  # a fresh worker for each case
                print(json.dumps(measure(gateway, model, stream, args.seconds)), flush=True)
    finally:
        upstream.kill()
        upstream.wait()
        upstream.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
