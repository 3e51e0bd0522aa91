"""Two hosts on one Redis: two gunicorn masters on different ports, as two hosts behind a load balancer would be.

A real redis-server and two servers per backend, each call of a test sent to
the host it names: sequences, the journal, batches, prompt caches and files
hold across the two, and scopes keep parallel runs apart on them.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator

import anthropic
import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, ended

MODEL = "claude-sonnet-4-5"
ADMIN_KEY = "two-hosts-admin"
SCRIPT = """
fallback: echo
rules:
  - name: flaky
    match: {user_text: flaky}
    replies:
      - error: {status: 529, type: overloaded_error, message: Overloaded}
      - text: "answered on call {{ counter }}"
"""


def hosts(env: dict[str, str]) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers of one configuration, one worker each, started together."""
    first, second = ServerProcess(env), ServerProcess(env)
    with first, second:
        yield first, second


@pytest.fixture(scope="module")
def shared_env(redis_server, tmp_path_factory) -> dict[str, str]:
    """What every host is started with: the one Redis, under a prefix of this module's own."""
    return {
        "UNDERSTUDY_STATE_URL": redis_server.url,
        "UNDERSTUDY_STATE_PREFIX": f"two-hosts-{secrets.token_hex(4)}",
        "UNDERSTUDY_API_KEYS": API_KEY,
        "UNDERSTUDY_ADMIN_KEY": ADMIN_KEY,
        "UNDERSTUDY_JOURNAL": "true",
        "UNDERSTUDY_VALIDATE_RESPONSES": "true",
        "UNDERSTUDY_FILES_DIR": str(tmp_path_factory.mktemp("shared-files")),  # a shared mount, as on two machines
    }


@pytest.fixture(scope="module")
def scripted(shared_env, tmp_path_factory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    script = tmp_path_factory.mktemp("script") / "script.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    yield from hosts({**shared_env, "UNDERSTUDY_BACKEND": "scripted", "UNDERSTUDY_SCRIPT": str(script)})


@pytest.fixture(scope="module")
def echo(shared_env) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    yield from hosts({**shared_env, "UNDERSTUDY_BACKEND": "echo"})


@pytest.fixture
def scope() -> str:
    """A scope of the test's own, so that the module's tests share hosts and not state."""
    return f"test-{secrets.token_hex(6)}"


def client(host: ServerProcess, scope: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=host.base_url,
        api_key=API_KEY,
        max_retries=0,
        timeout=20,
        default_headers={"x-understudy-scope": scope},
    )


def ask(host: ServerProcess, scope: str, content, **fields) -> anthropic.types.Message:
    with client(host, scope) as sdk:
        return sdk.messages.create(
            model=MODEL, max_tokens=200, messages=[{"role": "user", "content": content}], **fields
        )


def journal(host: ServerProcess, scope: str) -> list[dict]:
    request = urllib.request.Request(
        f"{host.base_url}/_understudy/requests?limit=1000",
        headers={"x-understudy-admin-key": ADMIN_KEY, "x-understudy-scope": scope},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def test_a_529_then_a_reply_holds_across_hosts(scripted, scope):
    first, second = scripted
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        ask(first, scope, "flaky")
    assert overloaded.value.status_code == 529
    assert ask(second, scope, "flaky").content[0].text == "answered on call 2"


def test_either_hosts_journal_lists_both_hosts_calls(scripted, scope):
    first, second = scripted
    ask(first, scope, "one")
    ask(second, scope, "two")
    for host in (first, second):
        assert [entry["body"]["messages"][0]["content"] for entry in journal(host, scope)] == ["one", "two"]


def test_a_batch_created_on_one_host_is_finished_and_read_on_the_other(echo, scope):
    first, second = echo
    with client(first, scope) as on_first, client(second, scope) as on_second:
        requests = [
            {"custom_id": f"r{n}", "params": {"model": MODEL, "max_tokens": 50, "messages": [
                {"role": "user", "content": f"question {n}"}]}}
            for n in range(20)
        ]  # fmt: skip
        created = on_first.messages.batches.create(requests=requests)
        batch = ended(on_second, created.id)
        assert batch.request_counts.succeeded == 20
        results = {result.custom_id: result for result in on_second.messages.batches.results(created.id)}
        assert results["r7"].result.message.content[0].text == "question 7"
        assert [listed.id for listed in on_first.messages.batches.list()] == [created.id]


def test_a_prompt_cached_through_one_host_is_read_through_the_other(echo, scope):
    first, second = echo
    system = [
        {"type": "text", "text": "A long and stable system prompt. " * 200, "cache_control": {"type": "ephemeral"}}
    ]
    written = ask(first, scope, "What?", system=system).usage
    read = ask(second, scope, "Who?", system=system).usage
    assert written.cache_creation_input_tokens > 0 and written.cache_read_input_tokens == 0
    assert read.cache_read_input_tokens == written.cache_creation_input_tokens


def test_a_file_uploaded_to_one_host_is_used_in_a_message_on_the_other(echo, scope):
    first, second = echo
    with client(first, scope) as on_first:
        uploaded = on_first.beta.files.upload(file=("notes.txt", b"The meeting is at noon.", "text/plain"))
    document = {"type": "document", "source": {"type": "file", "file_id": uploaded.id}}
    answer = ask(second, scope, [document, {"type": "text", "text": "When?"}])
    assert answer.content[0].text == "[document: The meeting is at noon.]\nWhen?"


def test_scopes_keep_parallel_runs_apart_on_shared_hosts(scripted, echo):
    first, second = scripted
    run_a, run_b = f"run-a-{secrets.token_hex(4)}", f"run-b-{secrets.token_hex(4)}"
    for run in (run_a, run_b):  # each run's first call is its own sequence's first reply
        with pytest.raises(anthropic.InternalServerError):
            ask(first, run, "flaky")
    assert ask(second, run_a, "flaky").content[0].text == "answered on call 2"
    assert [entry["status"] for entry in journal(second, run_b)] == [529]
    with client(echo[0], run_a) as in_a, client(echo[1], run_b) as in_b:
        uploaded = in_a.beta.files.upload(file=("a.txt", b"run a's", "text/plain"))
        with pytest.raises(anthropic.NotFoundError):
            in_b.beta.files.retrieve_metadata(uploaded.id)
        assert [listed.id for listed in in_b.beta.files.list()] == []
