"""Redis faults, as an operator meets them: a bad URL or no Redis at start-up, and Redis stopped under load.

The Redis here is a real redis-server, stopped and started again while a
server answers calls that need it (a scripted sequence: each call takes the
next count). While it is away those calls get the API's 503 `api_error` at
once, never a hang or a 500; once it is back the server answers again by
itself, and the sequence goes on from the last count it acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import anthropic
import pytest

from app.launcher.server_process import ServerProcess, free_port

from builders import API_KEY, start_up
from redis_server import RedisServer

MODEL = "claude-sonnet-4-5"
COUNTED = "- name: counted\n  reply: {text: 'call {{ counter }}'}\n"


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("redis://127.0.0.1:notaport/0", "UNDERSTUDY_STATE_URL: must be redis://HOST:PORT/DB"),
        ("mysql://localhost/db", "UNDERSTUDY_STATE_URL: must be redis://HOST:PORT/DB"),
        ("redis://:hunter2@127.0.0.1:{unused_port}/0", "UNDERSTUDY_STATE_URL: cannot reach the state store at redis://127.0.0.1:"),
    ],
)  # fmt: skip
def test_a_bad_or_unreachable_state_url_stops_start_up_with_one_line(url, line):
    result = start_up({"UNDERSTUDY_STATE_URL": url.format(unused_port=free_port())})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"understudy: configuration error: {line}"), last
    assert "hunter2" not in result.stderr  # a password in the URL is never shown


def test_a_bad_key_prefix_stops_start_up_with_one_line():
    result = start_up({"UNDERSTUDY_STATE_PREFIX": "team{a}"})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("understudy: configuration error: UNDERSTUDY_STATE_PREFIX")


def health_of(server: ServerProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.base_url}/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def replace_a_worker(server: ServerProcess) -> bool:
    """Kill a worker and wait for gunicorn to boot its replacement; whether it did (and the server runs on)."""
    before = server.worker_pids()
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = server.worker_pids()
        if len(now) == len(before) and before[0] not in now:
            return server.process is not None and server.process.poll() is None
        time.sleep(0.1)
    return False


def ask(sdk: anthropic.Anthropic) -> str:
    message = sdk.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "count"}])
    return message.content[0].text


def test_redis_stopped_under_load_gives_503s_and_the_server_recovers_when_it_returns(tmp_path):
    script = tmp_path / "script.yaml"
    script.write_text(COUNTED, encoding="utf-8")
    with RedisServer(tmp_path / "redis") as redis_server:
        env = {
            "UNDERSTUDY_STATE_URL": redis_server.url,
            "UNDERSTUDY_BACKEND": "scripted",
            "UNDERSTUDY_SCRIPT": str(script),
            "UNDERSTUDY_API_KEYS": API_KEY,
        }
        with (
            ServerProcess(env, workers=2) as server,
            anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=20) as sdk,
        ):
            answers: list[str] = []
            failures: list[anthropic.APIStatusError] = []
            stop = threading.Event()

            def load() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        answers.append(ask(sdk))
                    except anthropic.APIStatusError as error:
                        assert time.monotonic() - started < 10  # an answer, not a hang
                        failures.append(error)
                    except anthropic.APIConnectionError:
                        pass  # a call the killed worker was answering

            clients = [threading.Thread(target=load) for _ in range(4)]
            for client in clients:
                client.start()
            time.sleep(1.0)
            redis_server.stop()
            time.sleep(1.5)
            health = health_of(server)
            replaced = replace_a_worker(server)  # a worker that boots while Redis is away boots all the same
            answered_before = len(answers)
            redis_server.start()
            deadline = time.monotonic() + 20
            while len(answers) < answered_before + 20 and time.monotonic() < deadline:
                time.sleep(0.1)
            stop.set()
            for client in clients:
                client.join(30)
            log = server.output

    assert replaced, "the killed worker was not replaced, or the server stopped"
    assert health == (503, {"status": "degraded", "backend": "scripted", "store": "unreachable"})
    assert failures, "no call met the outage"
    assert {(error.status_code, error.body["error"]["type"]) for error in failures} == {(503, "api_error")}
    assert "unreachable" in failures[0].message
    assert len(answers) >= answered_before + 20, "the server did not recover"
    counts = [int(text.split()[1]) for text in answers]
    assert len(set(counts)) == len(counts)  # no count given twice: none acknowledged was lost
    assert "Traceback" not in log
