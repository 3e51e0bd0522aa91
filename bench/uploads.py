"""File uploads: a worker's memory and the upload rate. `python bench/uploads.py` (`--megabytes N`, `--rounds N`).

One worker (default settings, files in a temporary directory) takes uploads
of an N MB file (100 by default) to POST /v1/files, sent as the SDKs send
them (a Content-Length) and chunked, and with UNDERSTUDY_INTERNALS off
(Connexion's own bridge into Flask). The client streams the file from one
1 MiB buffer, so it holds no copy either. While each upload runs, the
worker's resident memory is sampled every 20 ms: the peak above its RSS
before the upload is what the upload cost in memory, and must stay far below
the file's size (the body is parsed as it arrives and written to disk, never
held: app/spec/multipart.py).

A file of the same size, as a tool makes one, is then downloaded, the
worker's memory sampled the same way (a download is streamed from disk, a
MiB at a time).

The upload rate is compared, in the same run, with a baseline: a plain Python
process that reads the same bytes from a socket and writes them to a file in
the same directory (what any server must do at least), in ABBA order across
the rounds, medians reported. It prints one JSON line per case and never
fails on the figures. Only 127.0.0.1 traffic; every loop is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import servers

KEY = "bench-uploads-key"
CHUNK = b"u" * 2**20
BOUNDARY = "benchboundary"
SAMPLE_EVERY = 0.02
TIMEOUT = 300.0


def part_head(filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(port: int, megabytes: int, *, chunked: bool, path: str = "/v1/files") -> tuple[int, float, Any]:
    """Send one upload of `megabytes` MiB; the status, the seconds it took, and the answer's JSON."""
    head = part_head("bench.bin")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    started = time.monotonic()
    connection.putrequest("POST", path)
    connection.putheader("x-api-key", KEY)
    connection.putheader("x-understudy-admin-key", KEY)
    connection.putheader("anthropic-version", "2023-06-01")
    connection.putheader("content-type", f"multipart/form-data; boundary={BOUNDARY}")
    if chunked:
        connection.putheader("transfer-encoding", "chunked")
    else:
        connection.putheader("content-length", str(len(head) + megabytes * len(CHUNK) + len(TAIL)))
    connection.endheaders()
    for piece in (head, *[CHUNK] * megabytes, TAIL):
        connection.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    answer = json.loads(response.read() or b"null")
    seconds = time.monotonic() - started
    connection.close()
    return response.status, seconds, answer


def delete(port: int, answer: Any) -> None:
    """Remove an uploaded file again, so that the rounds do not fill the disk."""
    if isinstance(answer, dict) and "id" in answer:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request(
            "DELETE", f"/v1/files/{answer['id']}", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}
        )
        connection.getresponse().read()
        connection.close()


def sink(listener: socket.socket, directory: str) -> None:
    """The baseline server: read each request's bytes from the socket into a file, answer 200."""
    while True:
        connection, _ = listener.accept()
        with connection, tempfile.NamedTemporaryFile(dir=directory) as file:
            data = connection.recv(2**20)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
            file.write(rest)
            received = len(rest)
            while received < length:
                data = connection.recv(2**20)
                file.write(data)
                received += len(data)
            connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnull")


def download(port: int, file_id: str) -> tuple[int, float, Any]:
    """Download a file, reading it a MiB at a time; the status, the seconds it took, and the bytes' count."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    started = time.monotonic()
    connection.request(
        "GET", f"/v1/files/{file_id}/content", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    )
    response = connection.getresponse()
    received = 0
    while piece := response.read(2**20):
        received += len(piece)
    connection.close()
    return response.status, time.monotonic() - started, received


def measured(server: Any, send: Callable[[], tuple[int, float, Any]]) -> dict[str, Any]:
    """One call of `send` (an upload or a download), the server's worker's RSS sampled meanwhile."""
    (worker,) = server.worker_pids()
    before = servers.rss_bytes(worker)
    outcome: dict[str, Any] = {}

    def call() -> None:
        outcome["status"], outcome["seconds"], outcome["answer"] = send()

    client = threading.Thread(target=call, daemon=True)
    client.start()
    peak = before
    deadline = time.monotonic() + TIMEOUT
    while client.is_alive() and time.monotonic() < deadline:
        peak = max(peak, servers.rss_bytes(worker))
        time.sleep(SAMPLE_EVERY)
    client.join(1)
    return {**outcome, "rss_before": before, "rss_peak": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=100, help="size of the uploaded file, MiB (default 100)")
    parser.add_argument("--rounds", type=int, default=4, help="uploads per case (default 4, ABBA with the baseline)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(servers.REPO))  # before bench/, whose backends.py is not the package
    from app.launcher.server_process import ServerProcess

    with tempfile.TemporaryDirectory() as directory:
        listener = socket.create_server(("127.0.0.1", 0))
        baseline = multiprocessing.Process(target=sink, args=(listener, directory), daemon=True)
        baseline.start()
        baseline_port = listener.getsockname()[1]
        cases = {
            "content-length": ({}, False),
            "chunked": ({}, True),
            "content-length, internals off": ({"UNDERSTUDY_INTERNALS": "false"}, False),
        }
        try:
            for name, (settings, chunked) in cases.items():
                env = {"UNDERSTUDY_API_KEYS": KEY, "UNDERSTUDY_ADMIN_KEY": KEY, "UNDERSTUDY_FILES_DIR": directory}
                with ServerProcess({**env, **settings}, workers=1) as server:
                    delete(server.port, upload(server.port, 1, chunked=chunked)[2])  # warm-up: the first one's set-up
                    print(json.dumps(run_case(name, server, baseline_port, args)), flush=True)
                    if not settings and not chunked:
                        print(json.dumps(download_case(server, args.megabytes)), flush=True)
        finally:
            baseline.terminate()
    return 0


def run_case(name: str, server: Any, baseline_port: int, args: argparse.Namespace) -> dict[str, Any]:
    """The case's rounds, in ABBA order with the baseline; medians and the largest RSS growth."""
    rates, baseline_rates, growths, statuses = [], [], [], set()
    for round_number in range(args.rounds):
        order = ("upload", "baseline") if round_number % 4 in (0, 3) else ("baseline", "upload")
        for which in order:
            if which == "baseline":
                _, seconds, _ = upload(baseline_port, args.megabytes, chunked=False)
                baseline_rates.append(args.megabytes / seconds)
                continue
            result = measured(server, lambda: upload(server.port, args.megabytes, chunked=name == "chunked"))
            delete(server.port, result.get("answer"))
            statuses.add(result["status"])
            rates.append(args.megabytes / result["seconds"])
            growths.append(result["rss_peak"] - result["rss_before"])
    rate, baseline_rate = statistics.median(rates), statistics.median(baseline_rates)
    return {
        "case": name,
        "megabytes": args.megabytes,
        "statuses": sorted(statuses),
        "worker_rss_growth_mb_max": round(max(growths) / 2**20, 1),
        "worker_rss_growth_mb_median": round(statistics.median(growths) / 2**20, 1),
        "upload_mb_per_s": round(rate, 1),
        "baseline_mb_per_s": round(baseline_rate, 1),
        "ratio_to_baseline": round(rate / baseline_rate, 2),
    }


def download_case(server: Any, megabytes: int) -> dict[str, Any]:
    """A file as a tool makes one (the admin route), downloaded: the worker's RSS growth and the rate."""
    _, _, made = upload(server.port, megabytes, chunked=False, path="/_understudy/files")
    result = measured(server, lambda: download(server.port, made["id"]))
    delete(server.port, made)
    return {
        "case": "download",
        "megabytes": megabytes,
        "statuses": [result["status"]],
        "bytes_received": result["answer"],
        "worker_rss_growth_mb_max": round((result["rss_peak"] - result["rss_before"]) / 2**20, 1),
        "download_mb_per_s": round(megabytes / result["seconds"], 1),
    }


if __name__ == "__main__":
    sys.exit(main())
