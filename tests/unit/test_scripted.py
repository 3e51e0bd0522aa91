"""The scripted backend: loading, matching, sequences, templates, timing, faults and reloads."""

from __future__ import annotations

import os
import re
from random import Random

import pytest
import yaml

from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.exchange import MessageRequest
from backends.safe_yaml import SafeDumper
from backends.scripted import ScriptedBackend
from backends.scripted.matching import RequestView, matches
from backends.scripted.prefilter import first_match
from backends.scripted.script import ScriptError, parse_script
from backends.wire import RULE_HEADER, ApiError, ConnectionAbort

from builders import message_body, state_store, weather_tool

CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)


def dump_yaml(data) -> str:
    """Rules as YAML text, written by libyaml where PyYAML has it (the random scripts below are many)."""
    return yaml.dump(data, Dumper=SafeDumper)


@pytest.fixture
def make_backend(tmp_path):
    """A scripted backend on a script given as YAML text; delays are recorded, not slept."""
    store = state_store(tmp_path / "state.sqlite3")

    def make(source: str, path=None):
        script = path or tmp_path / "script.yaml"
        script.write_text(source)
        slept: list[float] = []
        backend = ScriptedBackend(CATALOGUE, script, store, sleep=slept.append)
        backend.slept = slept
        return backend

    return make


def request(text="hello", headers=None, **fields):
    return MessageRequest(message_body(text, **fields), headers or {})


def text_of(reply):
    return reply.body["content"][0]["text"]


def test_first_matching_rule_wins(make_backend):
    backend = make_backend(
        """
- name: greeting
  match: {user_text: {contains: hello, ignore_case: true}}
  reply: {text: "Hi from {{ rule }} to {{ model }}"}
- name: anything
  reply: {text: other}
"""
    )
    reply = backend.create_message(request("Well HELLO there"))
    assert text_of(reply) == "Hi from greeting to claude-sonnet-4-5"
    assert reply.headers[RULE_HEADER] == "greeting"
    assert text_of(backend.create_message(request("bye"))) == "other"


@pytest.mark.parametrize(
    ("match", "fields", "headers", "expected"),
    [
        ({"user_text": "exact text"}, {}, {}, True),
        ({"user_text": "exact"}, {}, {}, False),
        ({"user_text": {"regex": r"^exact \w+$"}}, {}, {}, True),
        ({"system": {"contains": "pirate"}}, {"system": "Talk like a pirate"}, {}, True),
        ({"model": {"regex": "^claude-sonnet"}}, {}, {}, True),
        ({"tools": True}, {"tools": [weather_tool()]}, {}, True),
        ({"tools": False}, {"tools": [weather_tool()]}, {}, False),
        ({"tools": "get_weather"}, {"tools": [weather_tool()]}, {}, True),
        ({"tools": "other"}, {"tools": [weather_tool()]}, {}, False),
        ({"turn": 1}, {}, {}, True),
        ({"turn": 2}, {}, {}, False),
        ({"stream": True}, {"stream": True}, {}, True),
        ({"stream": False}, {"stream": True}, {}, False),
        ({"headers": {"x-test-id": "t-42"}}, {}, {"x-test-id": "t-42"}, True),
        ({"headers": {"x-test-id": "t-42"}}, {}, {}, False),
        ({"user_id": "alice"}, {"metadata": {"user_id": "alice"}}, {}, True),
    ],
)
def test_conditions(make_backend, match, fields, headers, expected):
    backend = make_backend(dump_yaml({"fallback": "error", "rules": [{"match": match, "reply": {"text": "yes"}}]}))
    if expected:
        assert text_of(backend.create_message(request("exact text", headers, **fields))) == "yes"
    else:
        with pytest.raises(ApiError):
            backend.create_message(request("exact text", headers, **fields))


def test_a_custom_id_condition_matches_batch_requests_only(make_backend):
    backend = make_backend(
        """
fallback: error
rules:
  - match: {custom_id: {regex: '^vip-'}}
    reply: {text: "for {{ custom_id }}"}
"""
    )
    batched = MessageRequest(message_body("hi"), {}, custom_id="vip-7")
    assert text_of(backend.create_message(batched)) == "for vip-7"
    with pytest.raises(ApiError, match="custom_id does not match '\\^vip-'"):
        backend.create_message(request("vip-7"))  # a request of its own has no custom_id


def test_tool_result_conditions(make_backend):
    backend = make_backend(
        """
fallback: error
rules:
  - match: {tool_result: {tool_name: get_weather, tool_use_id: toolu_1}}
    reply: {text: "{{ user_text }}"}
"""
    )
    body = message_body(tools=[weather_tool()])
    body["messages"] = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
    ]
    assert text_of(backend.create_message(MessageRequest(body))) == "[tool_result toolu_1: sunny]"


def test_no_match_error_names_the_closest_rule(make_backend):
    backend = make_backend(
        """
fallback: error
rules:
  - name: far
    match: {user_text: nope, model: nope, stream: true}
    reply: {text: a}
  - name: near
    match: {user_text: {contains: weather}, tools: true}
    reply: {text: b}
"""
    )
    with pytest.raises(ApiError) as error:
        backend.create_message(request("what is the weather"))
    assert error.value.status == 400
    assert "Closest: rule 'near' (line 7): no tools are offered" in error.value.message


def test_echo_fallback(make_backend):
    backend = make_backend("- match: {user_text: never}\n  reply: {text: a}\n")
    reply = backend.create_message(request("echo me"))
    assert text_of(reply) == "echo me" and reply.headers[RULE_HEADER] == "(fallback)"


@pytest.mark.parametrize(
    ("when_exhausted", "expected"),
    [("repeat_last", ["one", "two", "two", "two"]), ("cycle", ["one", "two", "one", "two"])],
)
def test_sequences(make_backend, when_exhausted, expected):
    backend = make_backend(f"- replies: [{{text: one}}, {{text: two}}]\n  when_exhausted: {when_exhausted}\n")
    assert [text_of(backend.create_message(request())) for _ in expected] == expected


def test_exhausted_sequence_can_fail(make_backend):
    backend = make_backend("- replies: [{text: once}]\n  when_exhausted: fail\n")
    assert text_of(backend.create_message(request())) == "once"
    with pytest.raises(ApiError, match="has used all 1 of its replies"):
        backend.create_message(request())


def test_sequence_positions_are_shared_through_the_store(make_backend, tmp_path):
    source = "- name: shared\n  replies: [{text: first}, {text: second}]\n"
    one = make_backend(source)
    other = make_backend(source)  # another worker: same store file, own connection
    assert text_of(one.create_message(request())) == "first"
    assert text_of(other.create_message(request())) == "second"


def test_error_replies(make_backend):
    backend = make_backend(
        """
- reply:
    error: {status: 429, type: rate_limit_error, message: slow down, headers: {retry-after: 3}}
"""
    )
    with pytest.raises(ApiError) as error:
        backend.create_message(request())
    assert (error.value.status, error.value.error_type, error.value.message) == (429, "rate_limit_error", "slow down")
    assert error.value.headers["retry-after"] == "3" and error.value.headers[RULE_HEADER] == "rule-1"
    with pytest.raises(ApiError):
        backend.stream_message(request(stream=True))  # before the first event: a real HTTP error


def test_templates_and_regex_groups(make_backend):
    backend = make_backend(
        r"""
- match: {user_text: {regex: 'order (?P<number>\d+) for (\w+)'}}
  reply: {text: "#{{ match.number }} / {{ match.2 }} / call {{ counter }}"}
"""
    )
    assert text_of(backend.create_message(request("order 66 for Bob"))) == "#66 / Bob / call 1"
    assert text_of(backend.create_message(request("order 7 for Ann"))) == "#7 / Ann / call 2"


def test_content_blocks_and_usage(make_backend):
    backend = make_backend(
        """
- reply:
    content:
      - {type: thinking, thinking: hmm}
      - {type: text, text: Calling.}
      - {type: tool_use, name: get_weather, input: {city: Paris}}
    usage: {input_tokens: 99}
"""
    )
    body = backend.create_message(request()).body
    thinking, _, tool_use = body["content"]
    assert thinking["signature"] and tool_use["id"].startswith("toolu_")
    assert body["stop_reason"] == "tool_use"
    assert body["usage"]["input_tokens"] == 99 and body["usage"]["output_tokens"] > 0


def test_stream_timing_and_jitter_are_repeatable(make_backend):
    source = """
defaults:
  stream: {first_token_ms: 300, tokens_per_second: 10, chunk_tokens: 2}
rules:
  - reply: {text: "one two three four five six"}
    stream: {jitter: 0.5, seed: 3}
"""
    backend = make_backend(source)
    events = list(backend.stream_message(request(stream=True)).events)
    deltas = [e for e in events if e["type"] == "content_block_delta"]
    assert "".join(d["delta"]["text"] for d in deltas) == "one two three four five six"
    assert len(backend.slept) == len(deltas) == 3
    assert 0.15 <= backend.slept[0] <= 0.45 and all(0.1 <= delay <= 0.3 for delay in backend.slept[1:])
    again = make_backend(source)
    list(again.stream_message(request(stream=True)).events)
    assert again.slept == backend.slept


@pytest.mark.parametrize(
    ("fault", "raises"),
    [("{kind: error_event, after_events: 3}", ApiError), ("{kind: disconnect, after_events: 3}", ConnectionAbort)],
)
def test_stream_faults_strike_after_n_events(make_backend, fault, raises):
    backend = make_backend(f"- reply: {{text: 'a b c d e f g h', fault: {fault}}}\n")
    events = backend.stream_message(request(stream=True)).events
    assert [next(events)["type"] for _ in range(3)] == ["message_start", "content_block_start", "ping"]
    with pytest.raises(raises):
        next(events)


def test_stall_pauses_then_continues(make_backend):
    backend = make_backend("- reply: {text: 'a b', fault: {kind: stall, after_events: 2, seconds: 45}}\n")
    events = list(backend.stream_message(request(stream=True)).events)
    assert events[-1]["type"] == "message_stop" and 45 in backend.slept
    backend.create_message(request())  # non-streamed: the stall comes before the reply
    assert backend.slept.count(45) == 2


def edit(script, source):
    """Rewrite a script file so that its change shows, however quickly it follows the last write."""
    stamp = script.stat().st_mtime + 1
    script.write_text(source)
    os.utime(script, (stamp, stamp))


def test_reload_on_change_keeps_the_old_script_when_the_new_one_is_broken(make_backend, tmp_path, caplog):
    script = tmp_path / "live.yaml"
    backend = make_backend("- reply: {text: old}\n", path=script)
    edit(script, "- reply: {text: [broken\n")
    assert text_of(backend.create_message(request())) == "old"
    assert "previous script keeps serving" in caplog.text
    edit(script, "- reply: {text: new}\n")
    assert text_of(backend.create_message(request())) == "new"


def test_a_restarted_worker_falls_back_to_the_last_good_script(make_backend, tmp_path):
    script = tmp_path / "live.yaml"
    make_backend("- reply: {text: good}\n", path=script)
    restarted = make_backend("- reply: {text: [broken\n", path=script)  # e.g. after SIGHUP
    assert text_of(restarted.create_message(request())) == "good"


def test_after_any_reload_every_worker_serves_the_last_good_script(make_backend, tmp_path):
    """Two workers on one file and one store: once an edit is served, no worker serves an older script."""
    script = tmp_path / "live.yaml"
    workers = [make_backend("- reply: {text: first}\n", path=script) for _ in range(2)]
    assert [text_of(worker.create_message(request())) for worker in workers] == ["first", "first"]

    edit(script, "- reply: {text: second}\n")
    assert [text_of(worker.create_message(request())) for worker in workers] == ["second", "second"]

    edit(script, "- reply: {text: third}\n")
    assert text_of(workers[0].create_message(request())) == "third"  # the other worker has not seen it yet
    edit(script, "- reply: {text: [broken\n")
    restarted = make_backend("- reply: {text: [broken\n", path=script)  # as after SIGHUP
    assert [text_of(worker.create_message(request())) for worker in [*workers, restarted]] == ["third"] * 3


def test_a_bad_script_with_no_good_one_stops_start_up(tmp_path):
    script = tmp_path / "bad.yaml"
    script.write_text("- reply: {txt: typo}\n")
    with pytest.raises(ValueError, match=r"bad.yaml:1: 0/reply"):
        ScriptedBackend(CATALOGUE, script, state_store(tmp_path / "s.sqlite3"))


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("rules:\n  - match: {user_txt: a}\n    reply: {text: a}\n", ":2: rules/0/match: Additional properties"),
        ("- match: {user_text: {regex: '('}}\n  reply: {text: a}\n", ":1: rule 0: bad regex"),
        ("- reply: {text: '{{ __import__ }}'}\n", "unknown template value"),
        ("- reply: {text: a, error: {status: 500}}\n", "a reply has exactly one of"),
        ("- reply: {text: a}\n  replies: [{text: b}]\n", "a rule has either `reply` or `replies`"),
        ("- reply: !!python/object/apply:os.system [echo hacked]\n", "not valid YAML"),
        ("", ":1: the script is empty"),
        ("- &a {reply: {text: a}}\n- *a\n", ":2: YAML aliases"),
    ],
)
def test_script_mistakes_name_file_and_line(source, problem):
    with pytest.raises(ScriptError, match=problem) as error:
        parse_script(source, "s.yaml")
    assert str(error.value).startswith("s.yaml:")


def test_catch_all_before_other_rules_is_warned_about():
    script = parse_script("- reply: {text: a}\n- match: {turn: 2}\n  reply: {text: b}\n", "s.yaml")
    assert "matches everything" in script.warnings[0]


def test_rules_in_a_row_on_one_field_share_a_screen():
    rules = [{"match": {"user_text": {"contains": f"topic {n}"}}, "reply": {"text": str(n)}} for n in range(50)]
    rules += [{"match": {"model": "claude-a"}, "reply": {"text": "a"}}, {"reply": {"text": "last"}}]
    script = parse_script(dump_yaml(rules), "s.yaml")
    assert [len(run.rules) for run in script.runs] == [50, 1, 1]
    asked = (("about topic 7", "7"), ("just topic 1.", "1"), ("topic 49, topic 3", "3"), ("nothing", "last"))
    for text, answer in asked:
        view = RequestView(message_body(text), {})
        assert first_match(script.runs, view).replies[0]["text"] == answer


@pytest.mark.parametrize(
    ("first", "second", "text", "headers"),
    [
        ({"headers": {"x-a": {"contains": "one"}}}, {"headers": {"x-b": {"contains": "two"}}}, "hi", {"x-b": "two"}),
        ({"user_text": "zz"}, {"user_text": {"contains": "ab"}}, "xxabxx", {}),
        ({"system": {"contains": "ab"}}, {"user_text": {"contains": "ab"}}, "ab", {}),
    ],
)
def test_screens_never_mix_fields_or_kinds(first, second, text, headers):
    rules = [{"match": first, "reply": {"text": "first"}}, {"match": second, "reply": {"text": "second"}}]
    script = parse_script(dump_yaml({"fallback": "error", "rules": rules}), "s.yaml")
    assert first_match(script.runs, RequestView(message_body(text), headers)).replies[0]["text"] == "second"


@pytest.mark.slow  # 1,000 scripts parsed and validated
@pytest.mark.parametrize("seed", range(4))
def test_screened_matching_picks_the_same_rule_as_trying_every_rule(seed):
    """Random scripts and requests: the screens never change which rule answers."""
    pieces = ["a", "ab", "abc", "b", "ba", "c", "a.b", "(a", "a*", "é", ""]
    random = Random(seed)

    def some_text(most: int) -> str:
        return "".join(random.choices(pieces, k=random.randint(0, most)))

    def text_condition():
        kind = random.choice(["contains", "contains", "exact", "exact", "regex", "ignore_case"])
        wanted = "".join(random.choices(pieces, k=random.randint(1, 2)))
        if kind == "ignore_case":
            return {"contains": wanted.upper(), "ignore_case": True}
        return {kind: re.escape(wanted) if kind == "regex" else wanted}

    def match():
        fields = {
            "user_text": text_condition,
            "system": text_condition,
            "user_id": text_condition,
            "custom_id": text_condition,
            "headers": lambda: {random.choice(["x-a", "x-b"]): text_condition()},
            "model": lambda: random.choice(["m1", "m2"]),
            "stream": lambda: random.choice([True, False]),
        }
        chosen = random.sample(sorted(fields), k=random.randint(0, 2))
        return {field: fields[field]() for field in chosen}

    for _ in range(250):
        rules = [{"match": match(), "reply": {"text": str(n)}} for n in range(random.randint(1, 12))]
        script = parse_script(dump_yaml({"fallback": "error", "rules": rules}), "s.yaml")
        for _ in range(10):
            body = message_body(
                some_text(4),
                model=random.choice(["m1", "m2"]),
                stream=random.choice([True, False]),
                system=some_text(3),
                metadata={"user_id": some_text(2)},
            )
            view = RequestView(body, {"x-a": some_text(2), "x-b": some_text(2)}, custom_id=some_text(2))
            expected = next((rule for rule in script.rules if matches(rule.conditions, view)), None)
            assert first_match(script.runs, view) is expected


@pytest.mark.parametrize(
    "strings",
    [
        [f"{'x' * 5000} {n}" for n in range(5)],  # too long for a screen: the rules are tried one by one
        ["a" * n for n in range(1, 300)],  # prefixes nested too deep for one regex
        [f"{'y' * 1500}{n}" for n in range(5)],  # long, with a long shared prefix
    ],
)
def test_long_or_deeply_shared_strings_still_load_and_match(strings):
    rules = [{"match": {"user_text": {"contains": string}}, "reply": {"text": "yes"}} for string in strings]
    script = parse_script(dump_yaml({"fallback": "error", "rules": rules}), "s.yaml")
    for string in strings:
        view = RequestView(message_body(f"<{string}>"), {})
        expected = next(rule for rule in script.rules if matches(rule.conditions, view))
        assert first_match(script.runs, view) is expected
    assert first_match(script.runs, RequestView(message_body("none of them"), {})) is None
