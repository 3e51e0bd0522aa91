"""Claude Code, out of the box, against real servers: headless `claude -p` with its default settings.

Claude Code (pinned in tests/node/package.json) calls the beta Messages API
the way the real API is called today: `?beta=true`, eight betas, adaptive
thinking, context_management, a `role: "system"` message with its own
output_config between the turns, twelve tools, every request streamed. The
only settings are the ones that keep it offline and headless (see
node_clients.offline_env); it runs with all its tools. Against the echo
backend one prompt is answered; against the scripted backend a whole agent
loop runs: the model asks for a Bash command that writes a file, Claude Code
runs it and sends the result back, and the model answers that. Every reply
is checked against openapi.yaml by the server (UNDERSTUDY_VALIDATE_RESPONSES).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import API_KEY
from node_clients import offline_env, run_claude

pytestmark = pytest.mark.usefixtures("node_clients")


def test_a_prompt_is_answered_by_the_echo_backend(server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    outcome = run_claude("say hello", offline_env(server.base_url, API_KEY, home), tmp_path)
    assert outcome["is_error"] is False, outcome
    assert outcome["subtype"] == "success" and outcome["num_turns"] == 1
    assert "say hello" in outcome["result"]  # the echo of the last user turn


#: The model's side of the loop: first a Bash tool call that writes a file, then, given its result, an answer.
AGENT_LOOP = """
fallback: error
rules:
  - name: answer-the-tool-result
    match: {tool_result: {tool_name: Bash}}
    reply: {text: "The file is written."}
  - name: write-a-file
    match: {user_text: {contains: "write the file"}, tool_result: false}
    reply:
      content:
        - {type: text, text: "I will write it."}
        - type: tool_use
          name: Bash
          input: {command: "echo written by the agent loop > out.txt", description: "Write out.txt"}
"""


def test_an_agent_loop_runs_end_to_end_against_the_scripted_backend(understudy, tmp_path: Path) -> None:
    server = understudy(AGENT_LOOP, env={"UNDERSTUDY_VALIDATE_RESPONSES": "true"})
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = offline_env(server.base_url, server.api_key, home)
    outcome = run_claude("Please write the file out.txt", env, work, "--allowedTools", "Bash")
    assert outcome["is_error"] is False, outcome
    assert outcome["result"] == "The file is written."
    assert (work / "out.txt").read_text() == "written by the agent loop\n"
    answered = [(entry["status"], entry["rule"]) for entry in server.journal(path="/v1/messages")]
    assert answered == [(200, "write-a-file"), (200, "answer-the-tool-result")]


def test_its_request_is_taken_as_sent(understudy, tmp_path: Path) -> None:
    """Nothing is stripped for it to pass: the journal holds the beta query and the fields Claude Code sends."""
    server = understudy([{"reply": {"text": "ok"}}])
    home = tmp_path / "home"
    home.mkdir()
    assert run_claude("hello", offline_env(server.base_url, server.api_key, home), tmp_path)["result"] == "ok"
    (entry,) = server.journal(path="/v1/messages")
    body = entry["body"]
    assert entry["query"] == "beta=true" and body["stream"] is True
    assert {"context_management", "thinking", "tools", "output_config"} <= set(body)
    (system,) = [message for message in body["messages"] if message["role"] == "system"]
    assert "output_config" in system
