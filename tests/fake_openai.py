"""A small OpenAI-compatible server for tests: `POST /v1/chat/completions`, scriptable failures.

    with FakeOpenAI(latency=0.05) as server:
        server.on(match="item-3", calls={1, 2}, status=503)   # 503 twice, then a normal reply
        ... OPENAI_BASE_URL=server.base_url ...
        assert server.calls("Summarize: item-3") == 3

A test that must act while a run is mid-way holds the server: `server.hold(after=2)` answers two
more requests and keeps every later one waiting, unanswered, until `server.release()`. The run
cannot finish meanwhile, and `server.wait_held(n, proc)` is the signal that it has got there (n
items in flight, the thread's lease held): no race against the clock.

Replies are deterministic (`reply_for`, `usage_for`), so tests can predict them. Every request
is logged with when it arrived, its last user message, whether it carried an Authorization
header (the key itself is never kept) and the status returned (None for a dropped connection).

As a process, for tests that need one: `python tests/fake_openai.py --port-file F [--latency S]
[--rules JSON] [--log F.jsonl]`; it serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Collection

REASONS = {401: "invalid_api_key", 429: "rate_limit_exceeded", 500: "server_error", 502: "bad_gateway", 503: "overloaded", 504: "timeout"}


def reply_for(prompt: str) -> str:
    """The reply to a prompt: stable, and visibly derived from it."""
    return "reply: " + " ".join(reversed(prompt.split()))


def usage_for(prompt: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = len(prompt.split()) + 7, len(reply_for(prompt).split())
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def masked(key: str) -> str:
    """A key as OpenAI echoes it in a 401: the first five and last four characters."""
    return key[:5] + "****" + key[-4:] if len(key) > 9 else "****"


def echoed(authorization: str) -> str:
    """What an echoing proxy says about the key it was sent: every form in which a key leaks."""
    key = authorization.removeprefix("Bearer ")
    return (
        f" (you sent Authorization: {authorization}; key={key}; "
        f"retry at https://proxy.invalid/v1/chat/completions?api_key={key}&model=x; "
        f"key begins {key[:12]} and ends {key[-12:]}; masked {masked(key)})"
    )


def retry_after_header(value: float | str) -> str:
    """A number as seconds (`0.5`); a string as it is (an HTTP-date, or garbage such as `soon`)."""
    return value if isinstance(value, str) else f"{value:g}"


@dataclass
class Rule:
    """What to do with a request whose prompt contains `match` (None: any prompt), on the
    listed per-prompt call numbers, 1-based (None: every call). The first matching rule wins."""

    match: str | None = None
    calls: Collection[int] | None = None
    status: int = 200
    delay: float = 0.0
    """Seconds to wait before answering (a slow reply, or one slower than the client's timeout)."""
    retry_after: float | str | None = None
    """The Retry-After header of an error: seconds, or a string sent as it is."""
    reset: bool = False
    """Close the connection without a response (RST)."""
    malformed: bool = False
    """Answer 200 with a body that is not JSON."""
    echo_key: bool = False
    """Echo the caller's key back, as some proxies do: in the error body (whole, its prefix and
    suffix, masked, in a URL's query string, as the Authorization header) and in a response
    header; a reset connection first sends a broken status line that holds it."""

    def applies(self, prompt: str, call: int) -> bool:
        return (self.match is None or self.match in prompt) and (self.calls is None or call in self.calls)


@dataclass
class Request:
    at: float
    """time.monotonic() when the request arrived."""
    prompt: str
    call: int
    """How many requests with this prompt have arrived, this one included."""
    authorized: bool
    status: int | None


class FakeOpenAI:
    def __init__(self, latency: float = 0.0, rules: list[Rule] | None = None, log_file: Path | None = None) -> None:
        self.latency = latency
        self.rules = list(rules or [])
        self.log_file = log_file
        self.requests: list[Request] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._answered = threading.Condition()
        self._answered_statuses: list[int] = []
        self._stopping = threading.Event()
        self._gate = threading.Condition(self._lock)
        """Notified when a request starts being held and when held requests are let go."""
        self._holding = False
        self._answer_before_hold = 0
        self._held: list[str] = []
        """The prompts of the requests held now."""
        self._hold_round = 0
        """Bumped by each release: a request waits only while the round it was held in lasts."""
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def on(self, match: str | None = None, calls: Collection[int] | None = None, **behaviour: Any) -> Rule:
        rule = Rule(match, calls, **behaviour)
        with self._lock:
            self.rules.append(rule)
        return rule

    def log(self, prompt: str | None = None) -> list[Request]:
        """A copy of the request log, optionally only the requests of one prompt."""
        with self._lock:
            return [r for r in self.requests if prompt is None or r.prompt == prompt]

    def calls(self, prompt: str) -> int:
        return len(self.log(prompt))

    def hold(self, after: int = 0) -> None:
        """Answer `after` more requests, then keep each later one waiting until `release()`."""
        with self._gate:
            self._holding, self._answer_before_hold = True, after

    def release(self) -> None:
        """Answer every request held, and hold no more."""
        with self._gate:
            self._holding = False
            self._answer_before_hold = 0
            self._hold_round += 1
            self._gate.notify_all()

    def held_prompts(self) -> list[str]:
        """The prompts of the requests waiting, unanswered, for `release()`."""
        with self._gate:
            return list(self._held)

    def wait_held(self, count: int, proc: Any = None, timeout: float = 120) -> None:
        """Block until `count` requests are held. Fails if the process `proc` (a Popen) ends
        first; `timeout` only bounds a test that would otherwise hang."""
        deadline = time.monotonic() + timeout
        with self._gate:
            while len(self._held) < count:
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"the process ended (exit {proc.returncode}) before {count} requests were held")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(self._held)} requests held, not {count}, after {timeout}s")
                self._gate.wait(0.05)  # a wakeup to look at `proc`; a held request notifies at once

    def _wait_if_held(self, prompt: str) -> None:
        """Called for each request: keep it waiting while the server holds requests."""
        with self._gate:
            if not self._holding:
                return
            if self._answer_before_hold > 0:
                self._answer_before_hold -= 1
                return
            held_in = self._hold_round
            self._held.append(prompt)
            self._gate.notify_all()
            try:
                while self._hold_round == held_in and not self._stopping.is_set():
                    self._gate.wait()
            finally:
                self._held.remove(prompt)

    def wait_answered(self, status: int, timeout: float = 60) -> bool:
        """Block until a response with `status` has been sent (not only decided); False on timeout."""
        with self._answered:
            return self._answered.wait_for(lambda: status in self._answered_statuses, timeout)

    def _sent(self, status: int) -> None:
        with self._answered:
            self._answered_statuses.append(status)
            self._answered.notify_all()

    def _admit(self, prompt: str, authorized: bool) -> Rule:
        with self._lock:
            call = self._counts[prompt] = self._counts.get(prompt, 0) + 1
            rule = next((r for r in self.rules if r.applies(prompt, call)), Rule())
            entry = Request(time.monotonic(), prompt, call, authorized, None if rule.reset else rule.status)
            self.requests.append(entry)
            if self.log_file:
                with open(self.log_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(asdict(entry)) + "\n")
        return rule

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that are sleeping through a slow reply
        self.release()  # and those held
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops a burst of connections: clients then wait 1 s to retry
    fake: FakeOpenAI

    def shutdown_request(self, request: socket.socket) -> None:
        # Close without shutdown(SHUT_WR): a reset connection then gets an RST, not a polite FIN.
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (its timeout, its process killed) is part of the tests, not an
        # error; printing it would also land in the output of an in-process CLI under test.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})
        try:
            request = json.loads(body)
        except ValueError:
            return self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        fake = self.server.fake
        auth = self.headers.get("Authorization") or ""
        prompt = last_user_text(request.get("messages") or [])
        rule = fake._admit(prompt, bool(auth))
        fake._wait_if_held(prompt)
        if fake._stopping.wait(rule.delay or fake.latency):
            return
        if rule.reset:
            if rule.echo_key:
                self._send_raw(f"HTTP/1.1 999 {auth}\r\n".encode())
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        echo = echoed(auth) if rule.echo_key else ""
        echo_headers = {"X-Echo-Authorization": auth} if rule.echo_key else {}
        if rule.malformed:
            return self._send(200, b'{"id": "chatcmpl-broken", "echo": "' + echo.encode() + b'", "choices": [', echo_headers)
        if rule.status == 401:
            message = f"Incorrect API key provided: {masked(auth.removeprefix('Bearer '))}. You can find your API key at https://platform.openai.com/account/api-keys.{echo}"
            return self._send(401, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}, echo_headers)
        if rule.status != 200:
            headers = {"Retry-After": retry_after_header(rule.retry_after)} if rule.retry_after is not None else {}
            reason = REASONS.get(rule.status, "error")
            body = {"error": {"message": f"simulated {reason}{echo}", "type": reason, "param": None, "code": None}}
            return self._send(rule.status, body, {**headers, **echo_headers})
        self._send(
            200,
            {
                "id": f"chatcmpl-{len(fake.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "test-model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply_for(prompt)}, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage_for(prompt),
            },
        )

    def _send_raw(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            self.server.fake._sent(status)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self.close_connection = True


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content or "")
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-file", type=Path, required=True, help="Write the bound port here once serving.")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rules", default="[]", help='JSON list of rules, e.g. [{"match": "x", "calls": [1], "status": 503}]')
    parser.add_argument("--log", type=Path, help="Append each request as a JSON line.")
    args = parser.parse_args()
    server = FakeOpenAI(args.latency, [Rule(**r) for r in json.loads(args.rules)], args.log).start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.port))
    tmp.replace(args.port_file)  # appears whole, so a reader never sees a partial number
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
