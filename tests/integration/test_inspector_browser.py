"""The inspector in a real browser (Debian's Chromium, headless, driven by Playwright), and /metrics across workers.

A real server, the official SDK sending to it, and the page watched as a
person would: rows appear as the requests arrive, a filter narrows them, a
stream's entry shows its events, and a body holding markup shows as text.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY, REPO_ROOT

ADMIN = "inspector-admin-key"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT = REPO_ROOT / "docs" / "inspector.png"
MODEL = "claude-sonnet-4-5"
ENV = {
    "UNDERSTUDY_API_KEYS": API_KEY,
    "UNDERSTUDY_ADMIN_KEY": ADMIN,
    "UNDERSTUDY_JOURNAL": "true",
    "UNDERSTUDY_METRICS": "true",
}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(ENV, workers=2) as running:
        yield running


@pytest.fixture
def page(server: ServerProcess) -> Iterator[object]:
    """A page of headless Chromium that has the admin key for the inspector (as a browser keeps it for a tab)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium: the README's test command installs Debian's")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(
            http_credentials={"username": "tester", "password": ADMIN}, viewport={"width": 1280, "height": 760}
        )
        opened = context.new_page()
        opened.errors = []  # what the page's own script threw, or the policy refused
        opened.on("pageerror", lambda error: opened.errors.append(str(error)))
        opened.on("console", lambda message: message.type == "error" and opened.errors.append(message.text))
        yield opened
        context.close()
        browser.close()


def ask(sdk: anthropic.Anthropic, text: str, **fields: object) -> None:
    sdk.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": text}], **fields)


def test_rows_appear_a_filter_narrows_them_and_a_stream_shows_its_events(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/_understudy/")
    expect(page.locator("#state")).to_contain_text("live")
    rows = page.locator("#entries tbody tr")
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0) as sdk:
        ask(sdk, "Hello from the inspector test")
        with sdk.messages.stream(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Stream this, word by word"}]
        ) as stream:
            stream.until_done()
        sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Count these"}])
        with pytest.raises(anthropic.NotFoundError):
            sdk.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    expect(rows).to_have_count(4)  # appeared without a reload, newest first
    expect(rows.first).to_contain_text("404")
    expect(rows.nth(2)).to_contain_text("200")

    page.fill("#filter-path", "count_tokens")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("/v1/messages/count_tokens")
    page.fill("#filter-path", "")
    page.fill("#filter-status", "4xx")
    expect(rows).to_have_count(1)
    page.fill("#filter-status", "")
    page.fill("#filter-text", "word by word")
    expect(rows).to_have_count(1)

    rows.first.click()
    expect(page.locator("#response-title")).to_contain_text("Stream")
    events = page.locator("#timeline li")
    expect(events.first).to_contain_text("message_start")
    expect(events.last).to_contain_text("message_stop")
    expect(page.locator("#timeline")).to_contain_text("content_block_delta · text_delta")
    expect(page.locator("#detail-headers")).to_contain_text('"authorization": "[masked]"')
    page.click("#copy-rule")
    expect(page.locator("#rule")).to_contain_text("user_text: Stream this, word by word")
    page.fill("#filter-text", "")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert page.errors == []


def test_a_body_holding_markup_shows_as_text(server, page):
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/_understudy/")
    markup = "<script>window.injected = true</script><img src=x onerror=window.injected=1>"
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0) as sdk:
        ask(sdk, markup, metadata={"user_id": "<b>bold</b>"})
    page.fill("#filter-text", "window.injected")
    rows = page.locator("#entries tbody tr")
    expect(rows).to_have_count(1)
    rows.first.click()
    expect(page.locator("#detail-body")).to_contain_text(markup)
    expect(page.locator("#detail-response")).to_contain_text(markup)
    assert page.evaluate("window.injected") is None
    assert page.locator("#detail img, #detail b, #entries script").count() == 0
    assert page.errors == []


def test_the_page_needs_the_key_and_is_served_under_a_strict_policy(server):
    for path in ("/_understudy/", "/_understudy/requests", "/metrics"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.base_url}{path}", timeout=5)
        assert refused.value.code == 401
    request = urllib.request.Request(f"{server.base_url}/_understudy/", headers={"x-understudy-admin-key": ADMIN})
    with urllib.request.urlopen(request, timeout=5) as response:
        policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "script-src 'self'" in policy


def test_metrics_sum_every_worker_s_counts(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**ENV, "UNDERSTUDY_JOURNAL": "false", "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    sent = 40
    with ServerProcess(env, workers=2) as running:
        for _ in range(sent):  # a client, and so a connection, each: the workers take them in turn
            with anthropic.Anthropic(base_url=running.base_url, api_key=API_KEY, max_retries=0) as sdk:
                ask(sdk, "Count me")
        request = urllib.request.Request(f"{running.base_url}/metrics", headers={"x-understudy-admin-key": ADMIN})
        deadline = time.monotonic() + 10
        while True:  # each worker writes what it has added up once a second (app/observing/metrics.py)
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read().decode()
            counted = [
                float(value)
                for value in re.findall(r'^understudy_requests_total\{[^}]*status="200"[^}]*\} (\S+)$', text, re.M)
            ]
            if sum(counted) >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        workers = set(running.worker_pids())
    assert sum(counted) == sent
    writers = {
        int(match) for match in re.findall(r"_(\d+)\.db$", "\n".join(str(path) for path in directory.iterdir()), re.M)
    }
    assert len(writers & workers) == 2  # both workers counted, and the scrape summed them
