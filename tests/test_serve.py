"""`agent serve` driven by LangGraph's own client (`langgraph-sdk`, sync and async, and
`RemoteGraph`) as a real process on 127.0.0.1, over a database the CLI reads too.

Runs that must be caught mid-way go to the fake OpenAI server, which holds their requests: a test
acts while a run is known to be waiting there, then lets it go. Nothing waits on the clock.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from tests.conftest import ENDPOINT_MODEL, ROOT, agent_cmd, agent_env
from tests.fake_openai import FakeOpenAI
from tests.served import Served

QUEUE = {"items": ["a", "b", "c"], "prompt": "Summarize: {item}"}
ACTIONS = {
    "request": "Close inactive accounts",
    "actions": [
        {"kind": "read_data", "target": "customers", "detail": "inactive accounts"},
        {"kind": "send_email", "target": "owners@example.com", "detail": "accounts will close"},
        {"kind": "delete_data", "target": "customers", "detail": "inactive rows"},
    ],
}
ON_ENDPOINT = {"configurable": {"model": ENDPOINT_MODEL, "max_attempts": 1}}


@pytest.fixture(scope="module")
def fake() -> FakeOpenAI:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def key() -> str:
    return "sk-test-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, key: str) -> Served:
    db = tmp_path_factory.mktemp("serve") / "agent.db"
    server = Served(db, "--workers", "8", OPENAI_API_KEY=key, OPENAI_BASE_URL=fake.base_url, NO_PROXY="127.0.0.1")
    yield server.wait_ready()
    server.stop()


@pytest.fixture
def client(served: Served):
    return get_sync_client(url=served.url)


def cli(served: Served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd(*args), cwd=ROOT, env=served.env, capture_output=True, text=True, timeout=120)


def cli_json(served: Served, *args: str):
    done = cli(served, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- assistants ------------------------------------------------------------------------------------------


def test_assistants_are_the_graphs_it_was_started_with(client, served: Served, tmp_path: Path):
    found = client.assistants.search(limit=20)
    assert sorted(a["graph_id"] for a in found) == ["approval", "research", "risky", "task_queue"]
    by_id = client.assistants.get(found[0]["assistant_id"])
    assert by_id == client.assistants.get(found[0]["graph_id"])
    drawing = client.assistants.get_graph("task_queue")
    assert {"load_items", "process_items"} <= {node["id"] for node in drawing["nodes"]}
    for graph in ("task_queue", "research", "risky", "approval"):
        schemas = client.assistants.get_schemas(graph)
        assert schemas["input_schema"]["properties"], graph
    assert set(client.assistants.get_schemas("task_queue")["input_schema"]["properties"]) >= {"items", "prompt"}
    # A path or module in a request is a name it does not know: refused, never imported.
    marker = tmp_path / "imported"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\nfrom graphs.research import build as graph\n")
    for name in (f"{evil}:graph", "graphs.research:build"):
        with pytest.raises(NotFoundError):
            client.assistants.get(name)
        answer = httpx.post(f"{served.url}/runs/wait", json={"assistant_id": name, "input": {}})
        assert answer.status_code == 404 and answer.json()["error"] == "UnknownGraph"
    assert not marker.exists()


# -- threads -------------------------------------------------------------------------------------------------


def test_a_thread_made_here_is_the_clis_and_back(client, served: Served):
    thread = client.threads.create(metadata={"team": "docs"})
    assert thread["status"] == "idle" and thread["metadata"]["team"] == "docs"
    values = client.runs.wait(thread["thread_id"], "task_queue", input=QUEUE)
    assert values["done"] == 3 and values["failed"] == 0
    listed = {t["thread_id"]: t for t in cli_json(served, "threads")}
    assert listed[thread["thread_id"]]["status"] == "completed"
    results = cli(served, "results", "--thread", thread["thread_id"], "--json")
    assert [json.loads(line)["status"] for line in results.stdout.splitlines()] == ["done"] * 3
    # Found by its metadata; its state and history as LangGraph shows them.
    assert [t["thread_id"] for t in client.threads.search(metadata={"team": "docs"})] == [thread["thread_id"]]
    client.threads.update(thread["thread_id"], metadata={"owner": "ana"})
    assert client.threads.get(thread["thread_id"])["metadata"]["owner"] == "ana"
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["done"] == 3 and state["next"] == []
    history = client.threads.get_history(thread["thread_id"], limit=100)
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert [h["metadata"]["step"] for h in history] == sorted((h["metadata"]["step"] for h in history), reverse=True)
    older = client.threads.get_state(thread["thread_id"], checkpoint_id=history[-1]["checkpoint"]["checkpoint_id"])
    assert older["metadata"]["step"] == -1
    # A state change is checked as `agent resume --set` checks it, and written as a checkpoint.
    changed = client.threads.update_state(thread["thread_id"], {"prompt": "Shorten: {item}"})
    assert client.threads.get_state(thread["thread_id"])["values"]["prompt"] == "Shorten: {item}"
    assert changed["checkpoint"]["checkpoint_id"] == cli_json(served, "status", "--thread", thread["thread_id"])["checkpoint_id"]
    answer = httpx.post(f"{served.url}/threads/{thread['thread_id']}/state", json={"values": {"nope": 1}})
    assert answer.status_code == 400 and "nope" in answer.json()["message"]
    # Copied (the CLI sees the copy), then deleted.
    copy = client.threads.copy(thread["thread_id"])
    assert client.threads.get_state(copy["thread_id"])["values"]["done"] == 3
    assert copy["thread_id"] in {t["thread_id"] for t in cli_json(served, "threads")}
    client.threads.delete(copy["thread_id"])
    with pytest.raises(NotFoundError):
        client.threads.get(copy["thread_id"])
    assert copy["thread_id"] not in {t["thread_id"] for t in cli_json(served, "threads")}


def test_runs_listed_joined_and_a_busy_thread_refused_or_queued(client, served: Served, fake: FakeOpenAI):
    thread = client.threads.create()["thread_id"]
    fake.hold()
    try:
        first = client.runs.create(thread, "task_queue", input={"items": ["p1"], "prompt": "Hold: {item}"}, config=ON_ENDPOINT)
        fake.wait_held(1)
        assert client.runs.get(thread, first["run_id"])["status"] == "running"
        with pytest.raises(ConflictError):
            client.runs.delete(thread, first["run_id"])  # a run not ended keeps its record
        with pytest.raises(ConflictError):
            client.runs.create(thread, "task_queue", config=ON_ENDPOINT)
        second = client.runs.create(thread, "task_queue", multitask_strategy="enqueue")
        assert client.runs.get(thread, second["run_id"])["status"] == "pending"
    finally:
        fake.release()
    assert client.runs.join(thread, first["run_id"])["done"] == 1
    assert client.runs.join(thread, second["run_id"])["done"] == 1  # a finished thread: nothing more to do
    runs = client.runs.list(thread)
    assert [r["run_id"] for r in runs] == [second["run_id"], first["run_id"]]
    assert [r["status"] for r in runs] == ["success", "success"]
    client.runs.delete(thread, first["run_id"])  # an ended run's record goes; the thread stays
    assert [r["run_id"] for r in client.runs.list(thread)] == [second["run_id"]]
    with pytest.raises(NotFoundError):
        client.runs.get(thread, first["run_id"])


def test_a_run_is_cancelled_at_its_next_node_boundary(client, fake: FakeOpenAI):
    thread = client.threads.create()["thread_id"]
    fake.hold()
    try:
        run = client.runs.create(thread, "research", input={"question": "cancel me"}, config=ON_ENDPOINT)
        fake.wait_held(1)
        client.runs.cancel(thread, run["run_id"])
    finally:
        fake.release()
    client.runs.join(thread, run["run_id"])
    assert client.runs.get(thread, run["run_id"])["status"] == "interrupted"
    assert client.threads.get(thread)["agent_status"] == "cancelled"


# -- streams -------------------------------------------------------------------------------------------------


def test_a_stream_in_the_modes_asked_for(client):
    thread = client.threads.create()["thread_id"]
    parts = list(client.runs.stream(thread, "research", input={"question": "why?"}, stream_mode=["values", "updates", "debug"]))
    kinds = [p.event for p in parts]
    assert kinds[0] == "metadata" and kinds[-1] == "end"
    updates = [next(iter(p.data)) for p in parts if p.event == "updates"]
    assert updates[0] == "plan" and updates[-1] == "synthesize" and "research_step" in updates
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert last_values["answer"] == client.threads.get_state(thread)["values"]["answer"]
    assert sum(p.event == "debug" for p in parts) == len(client.threads.get_history(thread, limit=100))


def test_a_dropped_stream_resumes_from_its_last_event_without_losing_one(served: Served, fake: FakeOpenAI):
    async def scenario() -> tuple[list, list, str, str]:
        aclient = get_client(url=served.url)
        thread = (await aclient.threads.create())["thread_id"]
        fake.hold(after=2)  # the plan and the first step are answered; the second step waits
        seen, run_id = [], None
        stream = aclient.runs.stream(thread, "research", input={"question": "reconnect"}, config=ON_ENDPOINT, stream_mode="updates")
        async for part in stream:
            seen.append(part)
            run_id = run_id or (part.data or {}).get("run_id")
            if part.event == "updates" and "research_step" in part.data:
                break  # the client goes away while the run still waits at the model
        await stream.aclose()
        await asyncio.to_thread(fake.wait_held, 1)
        fake.release()
        rest = [part async for part in aclient.runs.join_stream(thread, run_id, stream_mode="updates", last_event_id=seen[-1].id)]
        return seen, rest, thread, run_id

    try:
        seen, rest, thread, run_id = asyncio.run(scenario())
    finally:
        fake.release()
    names = [next(iter(p.data)) for p in seen + rest if p.event == "updates"]
    assert names == ["plan", "research_step", "research_step", "research_step", "synthesize"]
    assert rest[-1].event == "end"
    ids = [p.id for p in seen + rest if p.event == "updates"]
    assert len(set(ids)) == len(ids)  # no event twice


# -- approvals -----------------------------------------------------------------------------------------------


def test_approvals_through_the_api_record_who_and_why(client, served: Served):
    thread = client.threads.create()["thread_id"]
    waiting = client.runs.wait(thread, "approval", input=ACTIONS)
    assert len(waiting["__interrupt__"]) == 2
    pending = httpx.get(f"{served.url}/agent/threads/{thread}/approvals").json()["approvals"]
    email = next(p for p in pending if p["kind"] == "send_email")
    answer = httpx.post(f"{served.url}/agent/threads/{thread}/approve", json={"ids": [email["id"]], "by": "ana", "reason": "owners asked"})
    assert answer.status_code == 200, answer.text
    assert httpx.post(f"{served.url}/agent/threads/{thread}/reject", json={"all": True}).status_code == 400  # a rejection needs a reason
    run = client.runs.create(thread, "approval", command={"resume": {"approved": False, "by": "bo", "reason": "keep the rows"}}, multitask_strategy="enqueue")
    client.runs.join(thread, run["run_id"])
    decisions = {d["action_id"]: d for d in client.threads.get_state(thread)["values"]["decisions"]}
    assert {(d["approved"], d["by"], d["via"]) for d in decisions.values()} == {(True, "ana", "api"), (False, "bo", "api")}
    assert client.threads.get(thread)["status"] == "idle"


def test_a_thread_started_here_is_answered_by_the_cli_and_the_reverse(client, served: Served):
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "approval", input=ACTIONS)
    done = cli(served, "approve", "--thread", thread, "--all")
    assert done.returncode == 0, done.stderr
    assert client.threads.get(thread)["agent_status"] == "completed"
    assert all(d["via"] == "agent approve" for d in client.threads.get_state(thread)["values"]["decisions"])
    # Queued by the CLI, driven by the server's worker, answered through the API.
    other = f"cli-{secrets.token_hex(3)}"
    assert cli(served, "submit", "approval", "--thread", other, "--input", json.dumps(ACTIONS)).returncode == 0
    run = client.runs.create(other, "approval", command={"resume": {"approved": True, "by": "cy"}}, multitask_strategy="enqueue")
    client.runs.join(other, run["run_id"])
    assert cli_json(served, "status", "--thread", other)["status"] == "completed"


def test_remote_graph_runs_a_thread_of_ours(served: Served):
    from langgraph.pregel.remote import RemoteGraph

    remote = RemoteGraph("research", url=served.url)
    config = {"configurable": {"thread_id": f"remote-{secrets.token_hex(3)}"}}
    get_sync_client(url=served.url).threads.create(thread_id=config["configurable"]["thread_id"])
    out = remote.invoke({"question": "remote?"}, config)
    assert out["answer"]
    assert remote.get_state(config).values["answer"] == out["answer"]
    assert len(list(remote.get_state_history(config))) >= 5


# -- crons and the store -----------------------------------------------------------------------------------


def test_crons_are_schedules_with_their_zone(client, served: Served):
    cron = client.crons.create("task_queue", schedule="0 9 * * 1-5", input=QUEUE)
    assert cron["cron_id"] in {c["cron_id"] for c in client.crons.search()}
    listed = {s["name"]: s for s in cli_json(served, "schedule", "list")}
    assert listed[cron["cron_id"]]["cron"] == "0 9 * * 1-5"
    zoned = httpx.post(f"{served.url}/runs/crons", json={"assistant_id": "task_queue", "schedule": "30 6 * * *", "input": QUEUE, "timezone": "Asia/Tokyo"}).json()
    shown = {s["name"]: s for s in httpx.get(f"{served.url}/agent/schedules").json()["schedules"]}[zoned["cron_id"]]
    assert shown["tz"] == "Asia/Tokyo" and shown["next_runs"][0]["at_local"][11:16] == "06:30"
    assert shown["next_runs"][0]["at_utc"][11:16] == "21:30"
    bad = httpx.post(f"{served.url}/runs/crons", json={"assistant_id": "task_queue", "schedule": "61 * * * *", "input": QUEUE})
    assert bad.status_code == 400 and "cron" in bad.json()["message"]
    client.crons.delete(cron["cron_id"])
    client.crons.delete(zoned["cron_id"])
    assert client.crons.search() == []


def test_store_items(client, served: Served):
    client.store.put_item(["users", "ana"], "prefs", {"tone": "short"})
    assert client.store.get_item(["users", "ana"], "prefs")["value"] == {"tone": "short"}
    assert [i["key"] for i in client.store.search_items(["users"])["items"]] == ["prefs"]
    assert ["users", "ana"] in client.store.list_namespaces(prefix=["users"])["namespaces"]
    client.store.delete_item(["users", "ana"], "prefs")
    with pytest.raises(NotFoundError):
        client.store.get_item(["users", "ana"], "prefs")
    refused = httpx.put(f"{served.url}/store/items", json={"namespace": ["results", "x"], "key": "0", "value": {"status": "done"}})
    assert refused.status_code == 403


# -- errors, secrets, webhooks -----------------------------------------------------------------------------


def test_errors_are_json_with_the_clis_meaning_and_no_flag(served: Served):
    no_item = httpx.post(f"{served.url}/runs/wait", json={"assistant_id": "task_queue", "input": {"items": ["a"], "prompt": "no placeholder"}})
    assert no_item.status_code == 400
    body = no_item.json()
    assert "{item}" in body["message"] + (body["hint"] or "") and "--" not in body["message"] + (body["hint"] or "")
    assert httpx.get(f"{served.url}/threads/nope").json()["error"] == "ThreadNotFound"
    assert httpx.get(f"{served.url}/threads/nope").status_code == 404
    setting = httpx.post(f"{served.url}/runs", json={"assistant_id": "task_queue", "input": QUEUE, "config": {"configurable": {"max_cost": -1}}})
    assert setting.status_code == 400 and setting.json()["setting"] == "max_cost"
    unknown = httpx.post(f"{served.url}/runs", json={"assistant_id": "task_queue", "input": QUEUE, "config": {"configurable": {"colour": 1}}})
    assert unknown.status_code == 400 and "colour" in unknown.json()["message"]
    assert httpx.post(f"{served.url}/threads/search", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400


def test_a_key_never_leaves_the_server(client, served: Served, fake: FakeOpenAI, key: str):
    fake.on(match="Refused", status=401)
    thread = client.threads.create()["thread_id"]
    out = client.runs.wait(thread, "task_queue", input={"items": ["x"], "prompt": "Refused: {item}"}, config=ON_ENDPOINT, raise_error=False)
    texts = [json.dumps(out), json.dumps(client.runs.list(thread)), json.dumps(client.threads.get(thread)),
             httpx.get(f"{served.url}/agent/threads/{thread}/status").text]  # fmt: skip
    assert "401" in texts[0] + texts[1]
    assert all(key not in text and key[-8:] not in text for text in texts)
    assert key not in "".join(served.log.lines)


class _Hooks(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.changed:
            self.server.calls.append((self.path, body))
            self.server.changed.notify_all()
        self.send_response(500 if self.path == "/failing" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhooks_are_called_and_a_failing_one_holds_nothing(client):
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    hooks.calls, hooks.changed = [], threading.Condition()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hooks.server_address[1]}"
    try:
        thread = client.threads.create()["thread_id"]
        run = client.runs.create(thread, "task_queue", input=QUEUE, webhook=f"{base}/ok?token=abc")
        failing = client.runs.create(client.threads.create()["thread_id"], "task_queue", input=QUEUE, webhook=f"{base}/failing")
        with hooks.changed:
            assert hooks.changed.wait_for(lambda: sum(p == "/failing" for p, _ in hooks.calls) >= 2 and any(p.startswith("/ok") for p, _ in hooks.calls), 120)
        body = next(b for p, b in hooks.calls if p.startswith("/ok"))
        assert body["run_id"] == run["run_id"] and body["status"] == "success" and body["values"]["done"] == 3
        # The run the failing hook is about ended all the same; the next run on the server is not held.
        assert client.runs.get(failing["thread_id"], failing["run_id"])["status"] == "success"
        assert client.runs.wait(client.threads.create()["thread_id"], "task_queue", input=QUEUE)["done"] == 3
        # A run waited for: its end is seen first by the request waiting on it, and still called.
        client.runs.wait(client.threads.create()["thread_id"], "task_queue", input=QUEUE, webhook=f"{base}/waited")
        with hooks.changed:
            assert hooks.changed.wait_for(lambda: any(p == "/waited" for p, _ in hooks.calls), 120)
        # A thread's own webhook, for the moment a person should hear of: an approval waits.
        waiting = client.threads.create()["thread_id"]
        named = httpx.put(f"{base_url(client)}/agent/threads/{waiting}/webhook", json={"url": f"{base}/thread", "events": ["interrupted"]})
        assert named.status_code == 200, named.text
        client.runs.wait(waiting, "approval", input=ACTIONS)
        with hooks.changed:
            assert hooks.changed.wait_for(lambda: any(p == "/thread" for p, _ in hooks.calls), 120)
        body = next(b for p, b in hooks.calls if p == "/thread")
        assert body["event"] == "interrupted" and body["thread_id"] == waiting
    finally:
        hooks.shutdown()
    assert httpx.post(f"{base_url(client)}/runs", json={"assistant_id": "task_queue", "input": QUEUE, "webhook": "file:///etc/passwd"}).status_code == 400


def base_url(client) -> str:
    return str(client.http.client.base_url).rstrip("/")


def test_a_schedules_webhook_hears_of_its_run_that_failed(client, served: Served, fake: FakeOpenAI, key: str, monkeypatch: pytest.MonkeyPatch):
    from runtime import open_database
    from runtime.schedules.calendar import get_schedule
    from runtime.schedules.clock import ManualClock
    from runtime.schedules.worker import Worker

    hooks = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    hooks.calls, hooks.changed = [], threading.Condition()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    fake.on(match="Nightly", status=401)
    try:
        cron = httpx.post(f"{served.url}/runs/crons", json={"assistant_id": "task_queue", "schedule": "0 3 * * *", "timezone": "Europe/Berlin",
                          "input": {"items": ["x"], "prompt": "Nightly: {item}"}, "config": {"configurable": {"model": ENDPOINT_MODEL}}}).json()  # fmt: skip
        url = f"http://127.0.0.1:{hooks.server_address[1]}/schedule"
        assert httpx.put(f"{served.url}/agent/schedules/{cron['cron_id']}/webhook", json={"url": url, "events": ["failed"]}).status_code == 200
        # Its 03:00 comes: the scheduler puts the run on the queue (checked here, as the server's
        # own scheduler checks it when it is due), and the server's worker runs it.
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        db = open_database(served.db)
        due = get_schedule(db, cron["cron_id"]).next_fire
        Worker(db, ManualClock(due + 1), enqueue=True).tick()
        with hooks.changed:
            assert hooks.changed.wait_for(lambda: hooks.calls, 120)
        path, body = hooks.calls[0]
        assert body["event"] == "failed" and body["schedule"] == cron["cron_id"] and "401" in body["error"]
        client.crons.delete(cron["cron_id"])
    finally:
        hooks.shutdown()
