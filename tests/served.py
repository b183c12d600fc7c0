"""A real `agent serve` process on 127.0.0.1 for the API's tests: started on a free port over a
database, ready once `GET /ok` answers, stopped with SIGTERM (its log kept for the test to read)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT, LineReader, agent_cmd, agent_env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, db: Any, *args: str, cwd: Path = ROOT, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db
        self.env = agent_env(db, **env)
        self.proc = subprocess.Popen(
            agent_cmd("serve", "--port", str(self.port), *args), cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.log = LineReader(self.proc.stderr)

    def wait_ready(self, timeout: float = 120) -> "Served":
        """Until the server answers (it is listening once `/ok` does); fails if the process ends first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent serve exited {self.proc.returncode}: {self.log.text()}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"agent serve did not answer within {timeout}s: {''.join(self.log.lines)}")
            time.sleep(0.1)

    def stop(self) -> str:
        """SIGTERM, then the whole log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.text()
