"""Record mode's script file: appended exchange by exchange, shared by workers, always a script that loads."""

from __future__ import annotations

import logging
import os

from backends.proxy.recording import Recorder
from backends.scripted.script import load_script
from backends.wire import ApiError

SECRET = "sk-upstream-secret"


def exchange(question: str, answer: str) -> tuple[dict, dict]:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": question}]}
    message = {"content": [{"type": "text", "text": answer}], "stop_reason": "end_turn", "usage": {"output_tokens": 1}}
    return body, message


def test_workers_share_one_recording_that_replays_in_order(tmp_path):
    path = tmp_path / "recorded.yaml"
    workers = [Recorder(path, [SECRET]), Recorder(path, [SECRET])]  # two workers, one file
    for n in range(60):
        question = f"question {n % 40}"  # the last 20 repeat earlier questions
        workers[n % 2].record(*exchange(question, f"answer {n}"))
    script, _ = load_script(path)
    assert len(script.rules) == 40
    assert [reply["content"][0]["text"] for reply in script.rules[0].replies] == ["answer 0", "answer 40"]
    assert [reply["content"][0]["text"] for reply in script.rules[39].replies] == ["answer 39"]
    assert [rule.name for rule in script.rules] == [f"recorded-{n + 1}" for n in range(40)]


def test_a_new_request_is_appended_and_a_repeat_rewrites(tmp_path):
    path = tmp_path / "recorded.yaml"
    recorder = Recorder(path, [])
    recorder.record(*exchange("first", "a"))
    before = path.stat().st_ino, path.read_text()
    recorder.record(*exchange("second", "b"))
    assert path.stat().st_ino == before[0] and path.read_text().startswith(before[1])  # appended in place
    recorder.record(*exchange("first", "c"))
    assert path.stat().st_ino != before[0]  # replaced whole: a reader never sees the rule half merged
    assert len(load_script(path)[0].rules) == 2


def test_secrets_are_masked_and_shared_values_written_out_in_full(tmp_path):
    path = tmp_path / "recorded.yaml"
    body, message = exchange(f"my key is {SECRET}", "noted")
    shared = {"city": "Oslo"}
    message["content"] = [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"a": shared, "b": shared}}]
    Recorder(path, [SECRET]).record(body, message)
    recorded = path.read_text()
    assert SECRET not in recorded and "[masked]" in recorded
    assert "&id" not in recorded and "*id" not in recorded  # scripts refuse YAML aliases
    assert load_script(path)[0].rules[0].replies[0]["content"][0]["input"] == {"a": shared, "b": shared}


def test_errors_are_recorded_with_their_retry_headers(tmp_path):
    path = tmp_path / "recorded.yaml"
    error = ApiError(429, "slow down", error_type="rate_limit_error", headers={"retry-after": "3", "x-other": "1"})
    Recorder(path, []).record_error(exchange("q", "")[0], error)
    reply = load_script(path)[0].rules[0].replies[0]
    assert reply["error"] == {
        "status": 429, "type": "rate_limit_error", "message": "slow down", "headers": {"retry-after": "3"}
    }  # fmt: skip


def test_a_file_that_is_not_a_recording_is_left_alone_and_logged(tmp_path, caplog):
    path = tmp_path / "script.yaml"
    path.write_text("rules:\n  - reply: {text: mine}\n")
    with caplog.at_level(logging.ERROR, logger="understudy"):
        Recorder(path, []).record(*exchange("q", "a"))  # the exchange itself is unharmed
    assert path.read_text() == "rules:\n  - reply: {text: mine}\n"
    assert "not a recording" in caplog.text


def test_a_request_repeated_across_workers_keeps_every_reply(tmp_path):
    path = tmp_path / "recorded.yaml"
    workers = [Recorder(path, []), Recorder(path, [])]
    for n in range(6):  # the same request, worker after worker: each rewrite grows the last rule's replies
        workers[n % 2].record(*exchange("again", f"answer {n}"))
    workers[1].record(*exchange("new", "fresh"))
    rules = load_script(path)[0].rules
    assert [reply["content"][0]["text"] for reply in rules[0].replies] == [f"answer {n}" for n in range(6)]
    assert [rule.replies[0]["content"][0]["text"] for rule in rules[1:]] == ["fresh"]


def test_a_failed_rewrite_leaves_no_trace(tmp_path, caplog):
    path = tmp_path / "recorded.yaml"
    recorder = Recorder(path, [])
    recorder.record(*exchange("q", "first"))
    blocker = tmp_path / f".recorded.yaml.{os.getpid()}.tmp"
    blocker.mkdir()  # the rewrite's temporary file cannot be written
    with caplog.at_level(logging.ERROR, logger="understudy"):
        recorder.record(*exchange("q", "lost"))
    assert "could not record" in caplog.text
    blocker.rmdir()
    recorder.record(*exchange("q", "second"))
    replies = load_script(path)[0].rules[0].replies
    assert [reply["content"][0]["text"] for reply in replies] == ["first", "second"]


def test_an_append_to_a_file_without_a_last_newline(tmp_path):
    path = tmp_path / "recorded.yaml"
    Recorder(path, []).record(*exchange("one", "a"))
    path.write_text(path.read_text().rstrip("\n"))  # saved by an editor that drops it
    Recorder(path, []).record(*exchange("two", "b"))
    assert [rule.name for rule in load_script(path)[0].rules] == ["recorded-1", "recorded-2"]
