"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) against a real
`agent serve` on a database that the CLI fills, each in processes of their own.

Every wait is on something that can be seen: a page element, an attribute, an HTTP answer, a
process's exit. Screenshots of each page go to the test's tmp_path.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Iterator

import pytest

from tests.conftest import ROOT, agent_cmd, agent_env

from playwright.sync_api import Browser, Page, expect, sync_playwright

BROWSER = shutil.which("chromium") or "/usr/bin/chromium"
SERVER_START_SECONDS = 60
WAIT_MS = 60_000
"""The longest any one thing may take to show: generous, for a machine with two busy cores."""
expect.set_options(timeout=WAIT_MS)

QUEUE_ITEMS = 3000
"""Items of a queue thread that must still be running while a test watches it: at 0.05 s a
model call, two at a time, about 75 s of work, so it runs past every wait here."""


# -- the server and the CLI, as real processes ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running `agent serve`, its database, and the CLI on the same database."""

    url: str
    db: Path
    tmp: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)
    log: IO[str] | None = None

    def agent(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(agent_cmd(*args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)

    def agent_json(self, *args: str):
        done = self.agent(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(agent_cmd(*args), cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc


def start_server(tmp_path: Path, **env: str) -> Served:
    db = tmp_path / "agent.db"
    port = free_port()
    served = Served(url=f"http://127.0.0.1:{port}", db=db, tmp=tmp_path, env=agent_env(db, **env))
    log = served.log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(agent_cmd("serve", "--port", str(port), "--db", str(db)), cwd=ROOT, env=served.env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    served.procs.append(proc)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{served.url}/ok", timeout=2) as answer:
                if answer.status == 200:
                    return served
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            proc.wait(timeout=0.1)  # the pause between polls, and the news if the server died
            break
        except subprocess.TimeoutExpired:
            pass
    log.flush()
    stop(served)
    pytest.fail(f"`agent serve` did not answer GET /ok within {SERVER_START_SECONDS} s (or exited):\n{(tmp_path / 'serve.log').read_text()[-3000:]}")


def stop(served: Served) -> None:
    for proc in reversed(served.procs):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if served.log is not None:
        served.log.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = start_server(tmp_path)
    yield server
    stop(server)


def queue_input(tmp: Path, count: int = QUEUE_ITEMS) -> str:
    path = tmp / f"items-{count}.json"
    path.write_text(json.dumps({"items": [f"text number {i}" for i in range(count)], "prompt": "Summarize: {item}"}))
    return f"@{path}"


LONG_QUEUE = ("--model", "offline:latency=0.05", "--concurrency", "2")


def run_long_queue(served: Served, thread: str) -> subprocess.Popen:
    """A queue thread that keeps running, its runner a process of its own, until stopped."""
    return served.spawn("run", "task_queue", "--thread", thread, "--input", queue_input(served.tmp), *LONG_QUEUE, "--quiet")


def submit_long_queue(served: Served, thread: str) -> None:
    """A queue thread that the server's own workers run, until stopped."""
    submitted = served.agent("submit", "task_queue", "--thread", thread, "--input", queue_input(served.tmp), *LONG_QUEUE)
    assert submitted.returncode == 0, submitted.stderr


# -- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(BROWSER).exists():
        pytest.fail(f"the dashboard tests need Chromium at {BROWSER}: `apt-get install chromium` (.ci/run does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert errors == [], f"the page threw: {errors}"


def row(page: Page, thread: str):
    return page.locator(f'[data-testid="thread-row"][data-thread-id="{thread}"]')


def open_thread(page: Page, thread: str) -> None:
    row(page, thread).click()
    expect(page.get_by_test_id("detail-thread-id")).to_have_text(thread)


def progress_of(page: Page, thread: str) -> int:
    value = row(page, thread).get_by_test_id("progress-bar").get_attribute("aria-valuenow")
    return int(value or 0)


def wait_progress_above(page: Page, thread: str, value: int) -> int:
    page.wait_for_function(
        """([thread, value]) => {
            const bar = document.querySelector(`[data-testid=thread-row][data-thread-id="${thread}"] [data-testid=progress-bar]`);
            return bar && Number(bar.getAttribute("aria-valuenow")) > value;
        }""",
        arg=[thread, value],
        timeout=WAIT_MS,
    )
    return progress_of(page, thread)


# -- the tests --------------------------------------------------------------------------------------


def test_the_thread_list_shows_every_thread_and_filters_by_status_and_graph(served: Served, page: Page):
    assert served.agent("run", "task_queue", "--thread", "queue-done", "--quiet", "--input",
                        '{"items": ["a", "b"], "prompt": "Summarize: {item}"}').returncode == 0  # fmt: skip
    assert served.agent("run", "research", "--thread", "research-done", "--quiet", "--input", '{"question": "Why?"}').returncode == 0
    assert served.agent("run", "approval", "--thread", "waiting", "--background", "--quiet").returncode == 3

    page.goto(served.url + "/")
    rows = page.get_by_test_id("thread-row")
    expect(rows).to_have_count(3)
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.threadId)")) == ["queue-done", "research-done", "waiting"]
    expect(row(page, "queue-done").get_by_test_id("thread-status")).to_have_text("completed")
    expect(row(page, "queue-done").get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "2")

    # The status the server gives a thread waiting for approval is the one to filter on.
    waiting_status = row(page, "waiting").get_attribute("data-status")
    assert waiting_status in ("interrupted", "awaiting_approval")
    page.get_by_test_id("status-filter").select_option(waiting_status)
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-thread-id", "waiting")

    page.get_by_test_id("status-filter").select_option("completed")
    expect(rows).to_have_count(2)
    page.get_by_test_id("graph-filter").select_option("research")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-thread-id", "research-done")

    page.get_by_test_id("status-filter").select_option("")
    page.get_by_test_id("graph-filter").select_option("task_queue")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-thread-id", "queue-done")
    page.get_by_test_id("graph-filter").select_option("")
    expect(rows).to_have_count(3)


def test_schedules_show_their_next_run_in_their_zone_and_in_utc_and_spend_is_charted(served: Served, page: Page):
    added = served.agent("schedule", "add", "digest", "--graph", "research", "--cron", "0 9 * * 1-5", "--tz", "Asia/Tokyo",
                         "--input", '{"question": "What changed overnight?"}')  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert served.agent("run", "task_queue", "--thread", "spent", "--quiet", "--input",
                        '{"items": ["a", "b"], "prompt": "Summarize: {item}"}').returncode == 0  # fmt: skip
    listed = served.agent_json("schedule", "list")[0]

    page.goto(served.url + "/")
    schedule = page.locator('[data-testid="schedule-row"][data-schedule="digest"]')
    expect(schedule).to_contain_text("Asia/Tokyo")
    local = datetime.fromisoformat(schedule.get_by_test_id("next-run-local").inner_text())
    utc = datetime.fromisoformat(schedule.get_by_test_id("next-run-utc").inner_text())
    assert local == utc == datetime.fromisoformat(listed["next_run_utc"])
    assert (local.hour, local.utcoffset().total_seconds(), utc.utcoffset().total_seconds()) == (9, 9 * 3600, 0)

    chart = page.locator('[data-testid="spend-chart"][data-thread-id="spent"]')
    expect(chart.locator("svg circle")).not_to_have_count(0)
    expect(chart).to_contain_text("$")


def test_a_queue_the_server_runs_has_a_progress_bar_that_moves(served: Served, page: Page):
    submit_long_queue(served, "live")
    page.goto(served.url + "/")
    bar = row(page, "live").get_by_test_id("progress-bar")
    expect(bar).to_have_attribute("aria-valuemax", str(QUEUE_ITEMS))
    first = wait_progress_above(page, "live", 0)
    second = wait_progress_above(page, "live", first)
    third = wait_progress_above(page, "live", second)
    assert 0 < first < second < third < QUEUE_ITEMS
    expect(row(page, "live").get_by_test_id("thread-status")).to_have_text("running")
    label = row(page, "live").get_by_test_id("progress-label")
    expect(label).to_contain_text(f"/{QUEUE_ITEMS}")
    expect(label).to_contain_text("$")


def test_the_history_after_a_fork_is_a_tree_of_two_branches(served: Served, page: Page):
    assert served.agent("run", "task_queue", "--thread", "t", "--quiet", "--input",
                        '{"items": ["a", "b", "c"], "prompt": "Summarize: {item}"}').returncode == 0  # fmt: skip
    resumed = served.agent("resume", "--thread", "t", "--checkpoint", "0", "--quiet")  # fork at step 0
    assert resumed.returncode == 0, resumed.stderr
    history = served.agent_json("history", "--thread", "t")
    assert {c["branch"] for c in history} == {0, 1}

    page.goto(served.url + "/")
    open_thread(page, "t")
    nodes = page.get_by_test_id("history-node")
    expect(nodes).to_have_count(len(history))
    shown = nodes.evaluate_all("ns => ns.map(n => [n.dataset.checkpointId, Number(n.dataset.branch), Number(n.dataset.lane)])")
    assert shown == [[c["checkpoint_id"], c["branch"], c["lane"]] for c in history]
    # Drawn as a tree: an edge from every checkpoint to its parent, and the fork leaves its lane.
    edges = page.locator("#history svg path.edge")
    expect(edges).to_have_count(len(history) - 1)
    lanes = page.locator("#history svg circle.node").evaluate_all("cs => [...new Set(cs.map(c => c.getAttribute('cx')))]")
    assert len(lanes) == 2

    # The newest checkpoint's state at first, then the one clicked.
    expect(page.get_by_test_id("state-view")).to_have_attribute("data-checkpoint-id", history[0]["checkpoint_id"])
    forked = next(c for c in history if c["branch"] == 1)
    page.locator(f'[data-testid="history-node"][data-checkpoint-id="{forked["checkpoint_id"]}"]').click()
    state_view = page.get_by_test_id("state-view")
    expect(state_view).to_have_attribute("data-checkpoint-id", forked["checkpoint_id"])
    expected_state = served.agent_json("state", "--thread", "t", "--checkpoint", forked["checkpoint_id"])
    assert json.loads(state_view.inner_text())["values"] == expected_state["values"]

    # Two checkpoints compared: the other branch's tip against the fork point.
    fork_point = next(c for c in history if c["step"] == 0 and c["branch"] == 0)
    for checkpoint in (fork_point, forked):
        page.locator(f'[data-testid="history-node"][data-checkpoint-id="{checkpoint["checkpoint_id"]}"]').click(modifiers=["Shift"])
    changes = page.get_by_test_id("diff-change")
    expect(changes.first).to_be_visible()
    answer = page.request.get(f"{served.url}/agent/threads/t/diff?before={fork_point['checkpoint_id']}&after={forked['checkpoint_id']}",
                              headers={"Accept": "application/json"})  # fmt: skip
    assert answer.ok
    paths = [c["path"] for c in answer.json()["changes"]]
    assert paths and changes.evaluate_all("cs => cs.map(c => c.dataset.path)") == paths


def test_approving_and_rejecting_from_the_page_records_who_and_why(served: Served, page: Page):
    assert served.agent("run", "approval", "--thread", "ap", "--background", "--quiet").returncode == 3
    pending = {p["action_id"]: p["id"] for p in served.agent_json("approvals", "--thread", "ap")}
    assert len(pending) == 2

    page.goto(served.url + "/")
    open_thread(page, "ap")
    cards = page.get_by_test_id("approval")
    expect(cards).to_have_count(2)
    first, second = sorted(pending)
    card = page.locator(f'[data-testid="approval"][data-approval-id="{pending[first]}"]')
    card.get_by_test_id("reason-input").fill("the notice is reviewed")
    card.get_by_test_id("by-input").fill("alice")
    card.get_by_test_id("approve-button").click()
    # Answered: shown as such until the thread has gone on with it, never offered again.
    expect(page.locator(f'[data-testid="approval"][data-approval-id="{pending[first]}"]:not([data-answered])')).to_have_count(0)

    # A rejection without a reason is stopped on the page, and says why.
    card = page.locator(f'[data-testid="approval"][data-approval-id="{pending[second]}"]')
    card.get_by_test_id("by-input").fill("bob")
    card.get_by_test_id("reason-input").fill("")
    card.get_by_test_id("reject-button").click()
    expect(page.get_by_test_id("error-banner")).to_be_visible()
    expect(page.get_by_test_id("error-message")).to_contain_text("reason")
    card.get_by_test_id("reason-input").fill("keep the rows for the audit")
    card.get_by_test_id("reject-button").click()

    expect(page.get_by_test_id("detail-status")).to_have_text("completed")
    decisions = {d["action_id"]: d for d in served.agent_json("state", "--thread", "ap")["values"]["decisions"]}
    assert decisions[first]["approved"] is True and decisions[first]["by"] == "alice"
    assert decisions[first]["reason"] == "the notice is reviewed"
    assert decisions[second]["approved"] is False and decisions[second]["by"] == "bob"
    assert decisions[second]["reason"] == "keep the rows for the audit"
    assert served.agent_json("approvals", "--thread", "ap") == []


def test_pausing_a_running_thread_from_the_page_ends_paused(served: Served, page: Page):
    runner = run_long_queue(served, "long")
    page.goto(served.url + "/")
    wait_progress_above(page, "long", 0)  # running, and its runner is past its first items
    open_thread(page, "long")
    expect(page.get_by_test_id("detail-status")).to_have_text("running")
    page.get_by_test_id("pause-button").click()
    expect(page.get_by_test_id("detail-status")).to_have_text("paused")
    assert runner.wait(timeout=WAIT_MS / 1000) == 3, runner.stderr.read()
    status = served.agent_json("status", "--thread", "long")
    assert status["status"] == "paused" and status["progress"]["done"] < QUEUE_ITEMS
    expect(row(page, "long").get_by_test_id("thread-status")).to_have_text("paused")


def test_an_error_from_the_server_shows_its_message_and_hint(served: Served, page: Page):
    assert served.agent("run", "task_queue", "--thread", "done", "--quiet", "--input",
                        '{"items": ["a"], "prompt": "Summarize: {item}"}').returncode == 0  # fmt: skip
    page.goto(served.url + "/")
    open_thread(page, "done")
    expect(page.get_by_test_id("detail-status")).to_have_text("completed")
    with page.expect_response(lambda r: r.url.endswith("/agent/threads/done/cancel")) as answered:
        page.get_by_test_id("cancel-button").click()
    answer = answered.value
    if answer.ok:  # cancelling a completed thread may be allowed; resuming a cancelled one is not
        expect(page.get_by_test_id("detail-status")).to_have_text("cancelled")
        with page.expect_response(lambda r: r.url.endswith("/agent/threads/done/resume")) as answered:
            page.get_by_test_id("resume-button").click()
        answer = answered.value
    assert not answer.ok
    body = answer.json()
    assert body["status"] == answer.status and body["message"]
    expect(page.get_by_test_id("error-banner")).to_be_visible()
    expect(page.get_by_test_id("error-message")).to_have_text(body["message"])
    if body.get("hint"):
        expect(page.get_by_test_id("error-hint")).to_have_text(body["hint"])


def test_a_token_in_the_address_is_kept_and_sent(tmp_path: Path, page: Page):
    served = start_server(tmp_path, AGENT_API_TOKEN="s3cret-token")
    try:
        assert served.agent("run", "task_queue", "--thread", "q", "--quiet", "--input",
                            '{"items": ["a"], "prompt": "Summarize: {item}"}').returncode == 0  # fmt: skip
        page.goto(served.url + "/")
        expect(page.get_by_test_id("error-banner")).to_be_visible()  # no token: the server says so
        page.goto(served.url + "/?token=s3cret-token")
        expect(row(page, "q")).to_be_visible()
        assert "token" not in page.url  # taken out of the address bar, kept for the tab
        page.reload()
        expect(row(page, "q")).to_be_visible()
        expect(page.get_by_test_id("error-banner")).to_be_hidden()
    finally:
        stop(served)
