"""Runs show up in LangSmith through its standard variables, and as OpenTelemetry spans.

LangSmith: the real CLI, with `LANGSMITH_TRACING=true` and `LANGSMITH_ENDPOINT` pointing at a
small server on 127.0.0.1 that keeps what the langsmith client sends. OpenTelemetry: a process of
its own (the tracer provider is global) runs threads with the SDK's in-memory exporter.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT


class TraceSink:
    """Answers the langsmith client as its endpoint would, keeping every request body and header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("content-length") or 0)))

            do_PATCH = do_POST

            def _answer(self, body: bytes) -> None:
                sink.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def runs(self) -> list[dict]:
        """Every run posted or patched, its parts (`post.<id>`, `post.<id>.extra`, ...) joined."""
        runs: dict[str, dict] = {}
        for _, path, headers, body in self.requests:
            if not path.startswith("/runs/multipart"):
                continue
            boundary = headers["content-type"].split("boundary=")[1].encode()
            for part in body.split(b"--" + boundary):
                name = re.search(rb'name="(post|patch)\.([0-9a-f-]+)(?:\.(\w+))?"', part)
                if not name:
                    continue
                payload = json.loads(part.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
                run = runs.setdefault(name.group(2).decode(), {})
                if name.group(3):
                    run[name.group(3).decode()] = payload
                else:
                    run.update(payload)
        return list(runs.values())


@pytest.fixture
def sink() -> Iterator[TraceSink]:
    sink = TraceSink()
    sink.thread.start()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


def test_a_run_is_a_langsmith_trace_with_its_thread_and_checkpoints(run_agent, sink: TraceSink, db_path: Path):
    key = "lsv2_pt_" + "5" * 32
    env = {"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": sink.url, "LANGSMITH_API_KEY": key, "LANGSMITH_PROJECT": "agent-tests"}
    proc = run_agent("run", "research", "--thread", "traced", "--input", '{"question": "Why?", "steps": 1}', **env)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(run_agent("status", "--thread", "traced", "--json").stdout)

    runs = sink.runs()  # sent before the command returned
    roots = [r for r in runs if r.get("name") == "agent research"]
    assert len(roots) == 1
    metadata = roots[0]["extra"]["metadata"]
    assert metadata["thread_id"] == "traced" and metadata["graph"] == "research"
    assert metadata["status"] == "completed" and metadata["end_checkpoint_id"] == status["checkpoint_id"]
    nodes = {r["name"]: r for r in runs if r.get("name") in ("plan", "research_step", "synthesize")}
    assert set(nodes) == {"plan", "research_step", "synthesize"}
    assert all(n["extra"]["metadata"]["thread_id"] == "traced" and "langgraph_step" in n["extra"]["metadata"] for n in nodes.values())
    assert any(r.get("name") == "OfflineChatModel" for r in runs)  # the model calls, beneath the nodes

    # The key went to the endpoint as a header, and nowhere else.
    assert any(headers.get("x-api-key") == key for _, _, headers, _ in sink.requests)
    assert not any(key.encode() in body for *_, body in sink.requests)
    assert key not in proc.stdout + proc.stderr
    assert all(key.encode() not in p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


def test_a_fork_names_the_checkpoint_it_started_from(run_agent, sink: TraceSink):
    assert run_agent("run", "research", "--thread", "f", "--input", '{"question": "Why?", "steps": 1}').returncode == 0
    history = json.loads(run_agent("history", "--thread", "f", "--json").stdout)
    start = next(row["checkpoint_id"] for row in history if row["step"] == 1)
    env = {"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": sink.url, "LANGSMITH_API_KEY": "lsv2_pt_test"}
    proc = run_agent("resume", "--thread", "f", "--checkpoint", start, **env)
    assert proc.returncode == 0, proc.stderr
    root = next(r for r in sink.runs() if r.get("name") == "agent research")
    assert root["extra"]["metadata"]["start_checkpoint_id"] == start


def test_without_langsmith_variables_nothing_is_sent(run_agent, sink: TraceSink):
    proc = run_agent("run", "research", "--thread", "quiet", "--input", '{"question": "Why?", "steps": 1}', LANGSMITH_ENDPOINT=sink.url)
    assert proc.returncode == 0, proc.stderr
    assert sink.requests == []


OTEL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    import runtime
    with runtime.open_database(sys.argv[1], create=True) as db:
        ok = runtime.run_thread(db, "research", "ok", {"question": "Why?", "steps": 1})
        bad = runtime.run_thread(db, "research", "bad", {"question": "Why?", "steps": 1},
                                 runtime.RunSettings(model="offline:reject_on=Question", max_attempts=1))
    spans = [
        {"name": s.name, "id": s.context.span_id, "parent": s.parent.span_id if s.parent else None,
         "attributes": dict(s.attributes), "status": s.status.status_code.name}
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps({"ok": [ok.status, ok.checkpoint_id], "bad": bad.status, "spans": spans}))
    """
)


def test_runs_and_nodes_are_opentelemetry_spans(tmp_path: Path):
    pytest.importorskip("opentelemetry.sdk")
    proc = subprocess.run(
        [sys.executable, "-c", OTEL_SCRIPT, str(tmp_path / "otel.db")], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["ok"][0] == "completed" and found["bad"] == "failed"
    spans = found["spans"]
    runs = {s["attributes"]["agent.thread_id"]: s for s in spans if s["name"] == "agent.run"}
    assert set(runs) == {"ok", "bad"}
    ok, bad = runs["ok"], runs["bad"]
    assert ok["attributes"]["agent.status"] == "completed" and ok["status"] == "UNSET"
    assert ok["attributes"]["agent.end_checkpoint_id"] == found["ok"][1] and ok["attributes"]["agent.graph"] == "research"
    assert bad["attributes"]["agent.status"] == "failed" and bad["status"] == "ERROR"
    ok_nodes = [s for s in spans if s["parent"] == ok["id"]]
    assert [s["name"] for s in ok_nodes] == ["agent.node plan", "agent.node research_step", "agent.node synthesize"]
    assert [s["attributes"]["agent.step"] for s in ok_nodes] == [1, 2, 3]
    bad_nodes = [s for s in spans if s["parent"] == bad["id"]]
    assert [s["status"] for s in bad_nodes] == ["UNSET"] * (len(bad_nodes) - 1) + ["ERROR"]  # the node that was refused
