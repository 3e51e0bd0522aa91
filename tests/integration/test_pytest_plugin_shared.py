"""The plugin's shared server (`understudy_shared`), from the outside: whole pytest sessions run with pytester.

Each test here runs a session of its own in a subprocess, as a user's suite
runs: the plugin is the installed one (its pytest11 entry point loads it, as
it does in a user's project), the script is named in the session's ini file
or by a fixture, and pytest-xdist's workers are real processes. The tests in
the inner sessions write down what they met (worker, server, scope) for the
test outside to compare, since it is the whole run that one server serves.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

RETRY_ON_529 = Path(__file__).resolve().parents[2] / "examples" / "retry_on_529.yaml"

#: Tests (by default two), each calling through the SDK, which retries the script's first-call 529: each must meet
#: the 529 itself, in its own scope, and find only its own two calls in its journal.
INNER_TESTS = """\
import json
import time
from pathlib import Path

import anthropic
import pytest


{marks}@pytest.mark.parametrize("name", {names!r})
def test_a_529_then_an_answer(understudy_shared, request, name):
    time.sleep({pause})
    with anthropic.Anthropic(**understudy_shared.client_options, max_retries=2) as client:
        reply = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=[{{"role": "user", "content": f"I am {{name}}"}}]
        )
    journal = understudy_shared.journal()
    worker = getattr(request.config, "workerinput", {{}}).get("workerid", "main")
    seen = {{
        "worker": worker,
        "name": name,
        "scope": understudy_shared.scope,
        "base_url": understudy_shared.base_url,
        "pid": understudy_shared.server.pid,
        "text": reply.content[0].text,
        "statuses": [entry["status"] for entry in journal],
        "asked": [entry["body"]["messages"][0]["content"] for entry in journal],
    }}
    Path("seen", f"{{worker}}-{{name}}.json").write_text(json.dumps(seen))
"""


def inner_tests(names: tuple[str, ...] = ("first", "second"), marks: str = "", pause: float = 0) -> str:
    """The inner tests, one for each name, with these marks, each pausing this long before its calls."""
    return INNER_TESTS.format(names=list(names), marks=marks, pause=pause)


#: The session's settings, as a user's project would have them (every warning an error, as this suite's are).
INI = f"""\
[pytest]
understudy_script = {RETRY_ON_529}
filterwarnings = error
"""


def run_session(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    """Run the inner session in a subprocess; its result, and what its tests saw, oldest first."""
    seen = pytester.path / "seen"
    seen.mkdir(exist_ok=True)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)
    return result, sorted((json.loads(path.read_text()) for path in seen.iterdir()), key=lambda one: one["name"])


def stopped(server: dict[str, Any]) -> bool:
    """Whether the server a test saw is gone: its port refuses connections and its process has exited."""
    port = int(server["base_url"].rsplit(":", 1)[1])
    with socket.socket() as probe:
        refused = probe.connect_ex(("127.0.0.1", port)) != 0
    try:
        os.kill(server["pid"], 0)
    except ProcessLookupError:
        return refused
    # Still listed: a zombie its parent (init, once the worker that started it exited) has yet to reap.
    return refused and Path(f"/proc/{server['pid']}/stat").read_text().rpartition(")")[2].split()[0] == "Z"


def test_xdist_workers_share_one_server_each_test_in_its_own_scope(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(inner_tests())

    # --dist each: every test in both workers at once, so the same tests (same node ids) meet on one server.
    result, seen = run_session(pytester, "-n", "2", "--dist", "each")

    result.assert_outcomes(passed=4)
    assert {one["worker"] for one in seen} == {"gw0", "gw1"}
    assert len({(one["base_url"], one["pid"]) for one in seen}) == 1  # one server for the run
    assert len({one["scope"] for one in seen}) == 4  # a scope for each test in each worker
    for one in seen:  # each met the first call's 529 itself, and its journal holds its own calls only
        assert one["text"] == "Answered on attempt 2."
        assert one["statuses"] == [529, 200]
        assert one["asked"] == [f"I am {one['name']}"] * 2
    assert stopped(seen[0])


def test_a_worker_that_attaches_late_finds_the_same_server(pytester: pytest.Pytester) -> None:
    """One worker's session is over before the other first asks for the server: it is the same server, still up."""
    pytester.makeini(INI)
    pytester.makepyfile(
        test_early=inner_tests(("early",), marks='@pytest.mark.xdist_group("early")\n'),
        test_late=inner_tests(("late",), marks='@pytest.mark.xdist_group("late")\n', pause=5),
    )

    # --dist loadgroup: each group in a worker of its own; the early one is done while the late one sleeps.
    result, [early, late] = run_session(pytester, "-n", "2", "--dist", "loadgroup")

    result.assert_outcomes(passed=2)
    assert early["worker"] != late["worker"]
    assert (early["base_url"], early["pid"]) == (late["base_url"], late["pid"])
    assert early["statuses"] == late["statuses"] == [529, 200]
    assert stopped(late)


def test_one_process_one_server_script_from_a_fixture(pytester: pytest.Pytester) -> None:
    """Without xdist the session itself starts and stops the server; here a conftest fixture gives the script."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(scope="session")
def understudy_script():
    return [{"name": "flaky", "replies": [
        {"error": {"status": 529, "type": "overloaded_error", "message": "Overloaded",
                   "headers": {"retry-after-ms": "50"}}},
        {"text": "Answered on attempt {{ counter }}."},
    ]}]
"""
    )
    pytester.makepyfile(inner_tests())

    result, seen = run_session(pytester, "-n", "0")

    result.assert_outcomes(passed=2)
    assert len({one["pid"] for one in seen}) == 1 and len({one["scope"] for one in seen}) == 2
    assert [one["statuses"] for one in seen] == [[529, 200], [529, 200]]
    assert stopped(seen[0])


def test_without_a_script_the_fixture_says_how_to_name_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs_it(understudy_shared):\n    pass\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "0", timeout=120)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*understudy_shared needs a script: set `understudy_script = *"])
