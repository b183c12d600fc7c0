"""`agent serve`'s guards, each against a real server process: the token on every endpoint,
loopback unless there is one, the body limit, cross-site requests, unknown ids, bad command
lines; its OpenAPI document fuzzed by schemathesis (no 500, no traceback); the graphs of a
langgraph.json and nothing else; and the same API over PostgreSQL.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from langgraph_sdk import get_sync_client

from tests.conftest import ROOT, agent_cmd, agent_env
from tests.served import Served, free_port

QUEUE = {"items": ["a", "b"], "prompt": "Summarize: {item}"}


def _operations(url: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    document = httpx.get(f"{url}/openapi.json", headers=headers).json()
    return [(method.upper(), path) for path, methods in document["paths"].items() for method in methods]


def _filled(path: str) -> str:
    return path.replace("{", "").replace("}", "") if "{" not in path else "/".join("unknown-id" if p.startswith("{") else p for p in path.split("/"))


def test_every_endpoint_needs_the_token(tmp_path: Path):
    token = secrets.token_urlsafe(24)
    served = Served(tmp_path / "agent.db", "--workers", "0", AGENT_API_TOKEN=token).wait_ready()
    try:
        good = {"Authorization": f"Bearer {token}"}
        operations = _operations(served.url, good)
        assert len(operations) > 40
        for method, path in operations:
            if path == "/ok":
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": token}):
                answer = httpx.request(method, served.url + _filled(path), headers=headers, json={})
                assert answer.status_code == 401, (method, path, headers)
                assert answer.json()["error"] == "Unauthorized" and token not in answer.text
            assert httpx.request(method, served.url + _filled(path), headers=good, json={}).status_code != 401, (method, path)
        assert httpx.get(served.url + "/ok").status_code == 200  # the health check and the page hold no data
        # langgraph-sdk's api_key (sent as X-Api-Key) is the token too.
        client = get_sync_client(url=served.url, api_key=token)
        assert client.threads.create()["status"] == "idle"
        assert token not in served.stop()
    finally:
        served.stop()


def test_only_loopback_without_a_token_and_bad_command_lines(tmp_path: Path):
    env = agent_env(tmp_path / "agent.db")
    for args in (["--host", "0.0.0.0"], ["--port", "0"], ["--workers", "-1"], ["--config", str(tmp_path / "missing.json")]):
        done = subprocess.run(agent_cmd("serve", *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.count("Error:") == 1, done.stderr
    assert "AGENT_API_TOKEN" in subprocess.run(agent_cmd("serve", "--host", "0.0.0.0"), cwd=ROOT, env=env, capture_output=True, text=True).stderr
    served = Served(tmp_path / "agent.db").wait_ready()
    try:
        taken = subprocess.run(agent_cmd("serve", "--port", str(served.port)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert taken.returncode == 2 and "cannot listen" in taken.stderr and "Traceback" not in taken.stderr
    finally:
        served.stop()
    assert not (tmp_path / "agent.db").with_suffix(".json").exists()


def test_bodies_are_limited_and_other_sites_cannot_change_anything(tmp_path: Path):
    served = Served(tmp_path / "agent.db", "--workers", "0").wait_ready()
    try:
        huge = json.dumps({"metadata": {"x": "y" * (2 << 20)}})
        assert httpx.post(f"{served.url}/threads", content=huge, headers={"content-type": "application/json"}).status_code == 413

        def chunks():
            for _ in range(40):
                yield b" " * 65536

        chunked = httpx.post(f"{served.url}/threads", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["error"] == "BodyTooLarge"
        before = httpx.post(f"{served.url}/threads/count", json={}).json()
        evil = httpx.post(f"{served.url}/threads", json={}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert httpx.post(f"{served.url}/threads", json={}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert httpx.post(f"{served.url}/threads/count", json={}).json() == before
        same = httpx.post(f"{served.url}/threads", json={}, headers={"Origin": served.url})
        assert same.status_code == 200
        assert httpx.get(f"{served.url}/threads/{same.json()['thread_id']}", headers={"Origin": "http://evil.example"}).status_code == 200
        # A model the server has no key for: the client is told which, as the CLI tells it.
        keyless = httpx.post(f"{served.url}/runs", json={"assistant_id": "research", "input": {"question": "q"}, "context": {"model": "openai:gpt-4o-mini"}})
        assert keyless.status_code == 400 and "OPENAI_API_KEY" in keyless.json()["message"]
        # Unknown ids: 404 with the error's shape, on every operation that names one.
        for method, path in _operations(served.url, {}):
            if "{" in path and method == "GET" and "store" not in path:
                answer = httpx.get(served.url + _filled(path))
                assert answer.status_code == 404, (path, answer.text)
                assert set(answer.json()) >= {"error", "message", "hint", "status"}
    finally:
        served.stop()


def test_the_openapi_document_fuzzed_finds_no_server_error(tmp_path: Path):
    token = secrets.token_urlsafe(16)
    served = Served(tmp_path / "agent.db", "--workers", "2", AGENT_API_TOKEN=token).wait_ready()
    try:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_checks", "PYTHONPATH": str(ROOT)}
        fuzz = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{served.url}/openapi.json", "-H", f"Authorization: Bearer {token}",
             "-c", "not_a_server_error,no_traceback_in_body", "-n", "25", "--seed", "20261202", "--no-color", "--request-timeout", "60"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
    finally:
        log = served.stop()
    failed = [line for line in log.splitlines() if " failed: " in line]
    assert fuzz.returncode == 0, fuzz.stdout[fuzz.stdout.find("FAILURES") :][:6000] + "\n".join(failed)
    assert " passed" in fuzz.stdout
    assert "Traceback" not in log and token not in log


MINE = """
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    n: int


def step(state: State) -> dict:
    get_stream_writer()({"note": "halfway", "n": state.get("n", 0)})
    return {"n": state.get("n", 0) + 1}


def build() -> StateGraph:
    graph = StateGraph(State)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_edge("step", END)
    return graph
"""


def test_it_serves_its_langgraph_jsons_graphs_and_no_other(tmp_path: Path):
    (tmp_path / "mine.py").write_text(MINE)
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"dependencies": ["."], "graphs": {"mine": "./mine.py:build", "task_queue": "./studio.py:task_queue"}}))
    served = Served(tmp_path / "agent.db", "--config", str(config), cwd=tmp_path).wait_ready()
    try:
        client = get_sync_client(url=served.url)
        assert {a["graph_id"] for a in client.assistants.search(limit=50)} == {"approval", "mine", "research", "risky", "task_queue"}
        assert set(client.assistants.get_schemas("mine")["input_schema"]["properties"]) == {"n"}
        thread = client.threads.create()["thread_id"]
        parts = list(client.runs.stream(thread, "mine", input={"n": 41}, stream_mode=["custom", "values"]))
        assert [p.data for p in parts if p.event == "custom"] == [{"note": "halfway", "n": 41}]
        assert [p.data for p in parts if p.event == "values"][-1] == {"n": 42}
        queue = client.threads.create()["thread_id"]
        parts = list(client.runs.stream(queue, "task_queue", input=QUEUE, stream_mode=["progress"]))
        progress = [p.data for p in parts if p.event == "progress"]
        assert progress and progress[-1]["done"] == 2 and progress[-1]["total"] == 2
    finally:
        served.stop()
    config.write_text(json.dumps({"graphs": {"broken": "./nowhere.py:graph"}}))
    done = subprocess.run(agent_cmd("serve", "--config", str(config), "--port", str(free_port())), cwd=tmp_path, env=agent_env(tmp_path / "agent.db"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "broken" in done.stderr and "Traceback" not in done.stderr


def test_the_same_api_over_postgresql():
    from tests.postgres_server import agent_database

    with agent_database() as url:
        served = Served(url, "--workers", "4").wait_ready()
        try:
            client = get_sync_client(url=served.url)
            thread = client.threads.create()["thread_id"]
            assert client.runs.wait(thread, "task_queue", input=QUEUE)["done"] == 2
            listed = subprocess.run(agent_cmd("threads", "--json"), cwd=ROOT, env=served.env, capture_output=True, text=True, timeout=120)
            assert {t["thread_id"]: t["status"] for t in json.loads(listed.stdout)}[thread] == "completed"
            parts = [p.event for p in client.runs.stream(client.threads.create()["thread_id"], "research", input={"question": "pg?"}, stream_mode="updates")]
            assert parts[0] == "metadata" and parts.count("updates") >= 5 and parts[-1] == "end"
            client.store.put_item(["notes"], "a", {"x": 1})
            assert client.store.get_item(["notes"], "a")["value"] == {"x": 1}
        finally:
            served.stop()


def test_answers_given_one_after_another_before_a_worker_takes_them_go_together(tmp_path: Path):
    actions = {"actions": [{"kind": "send_email", "target": "a@example.com", "detail": "x"}, {"kind": "delete_data", "target": "rows", "detail": "y"}]}
    served = Served(tmp_path / "agent.db", "--workers", "0").wait_ready()
    try:
        env = served.env
        started = subprocess.run(agent_cmd("run", "approval", "--thread", "two", "--background", "--input", json.dumps(actions)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 3, started.stderr
        pending = httpx.get(f"{served.url}/agent/threads/two/approvals").json()["approvals"]
        assert len(pending) == 2
        first = httpx.post(f"{served.url}/agent/threads/two/approve", json={"ids": [pending[0]["id"]], "by": "ana"})
        second = httpx.post(f"{served.url}/agent/threads/two/reject", json={"ids": [pending[1]["id"]], "by": "bo", "reason": "no"})
        assert (first.status_code, second.status_code) == (200, 200), second.text
        ran = subprocess.run(agent_cmd("worker", "--once"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr
        state = httpx.get(f"{served.url}/threads/two/state").json()
        assert sorted((d["by"], d["approved"]) for d in state["values"]["decisions"]) == [("ana", True), ("bo", False)]
        assert httpx.get(f"{served.url}/threads/two").json()["agent_status"] == "completed"
    finally:
        served.stop()


def test_a_server_stopped_mid_run_leaves_it_queued_and_the_next_one_finishes_it(tmp_path: Path):
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        env = {"OPENAI_API_KEY": "sk-test-" + secrets.token_hex(8), "OPENAI_BASE_URL": fake.base_url, "NO_PROXY": "127.0.0.1"}
        served = Served(tmp_path / "agent.db", **env).wait_ready()
        fake.hold(after=1)  # the plan is answered; the first step waits at the model
        try:
            client = get_sync_client(url=served.url)
            run = client.runs.create(None, "research", input={"question": "stop me"}, config={"configurable": {"model": "openai:test-model"}})
            fake.wait_held(1, served.proc)
            # SIGTERM while the step waits: the run is asked to stop at its next node boundary...
            served.proc.send_signal(signal.SIGTERM)
            served.log.wait_for("stopping 1 thread(s)")
        finally:
            fake.release()  # ...which it reaches once the step has its answer
        log = served.stop()
        assert served.proc.returncode == 0, log
        status = json.loads(subprocess.run(agent_cmd("status", "--thread", run["thread_id"], "--json"), cwd=ROOT, env=served.env, capture_output=True, text=True).stdout)
        assert status["status"] == "stopped" and status["queued"]["kind"] == "resume"
        again = Served(tmp_path / "agent.db", **env).wait_ready()
        try:
            client = get_sync_client(url=again.url)
            assert client.runs.join(run["thread_id"], run["run_id"])["answer"]
            assert client.runs.get(run["thread_id"], run["run_id"])["status"] == "success"
            steps = [h["metadata"]["step"] for h in client.threads.get_history(run["thread_id"], limit=100)]
            assert len(steps) == len(set(steps))  # no step written twice
        finally:
            again.stop()
