"""How the HTTP API words what the runtime says (runtime/errors.py): a setting as the JSON field
that carries it (`max_cost`), a command as the request that does it (`POST
/threads/{thread_id}/runs`), so that an error body means what the CLI's line means, with no CLI
flag in it. Every error is one JSON shape with the status its kind of problem has.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import AgentError, Command, Duration, Face, Setting, Verb

REQUESTS = {
    "run": "POST /threads/{thread_id}/runs",
    "submit": "POST /threads/{thread_id}/runs",
    "resume": "POST /threads/{thread_id}/runs",
    "retry-failed": "POST /agent/threads/{thread_id}/retry-failed",
    "status": "GET /agent/threads/{thread_id}/status",
    "state": "GET /threads/{thread_id}/state",
    "history": "GET /agent/threads/{thread_id}/history",
    "results": "GET /agent/threads/{thread_id}/results",
    "threads": "GET /agent/threads",
    "approvals": "GET /agent/threads/{thread_id}/approvals",
    "approve": "POST /agent/threads/{thread_id}/approve",
    "reject": "POST /agent/threads/{thread_id}/reject",
    "pause": "POST /agent/threads/{thread_id}/pause",
    "cancel": "POST /agent/threads/{thread_id}/cancel",
    "delete": "DELETE /threads/{thread_id}",
    "fork": "POST /threads/{thread_id}/copy",
    "workers": "GET /agent/workers",
    "schedule list": "GET /agent/schedules",
    "schedule runs": "GET /agent/schedules/{name}/runs",
}
"""Verb -> the request that does it. A verb with no request here is named as the operation it is."""


class HttpFace(Face):
    """The wording for an HTTP client: settings as the body's fields, commands as requests."""

    def setting(self, setting: Setting) -> str:
        if setting.key is not None:
            return f"{setting.name}[{self.value(setting.key)}]"
        return f"{setting.name}={self.value(setting.value)}" if setting.has_value else f"`{setting.name}`"

    def verb(self, verb: Verb) -> str:
        return REQUESTS.get(verb.verb, verb.verb).split(" {", 1)[0]

    def command(self, command: Command) -> str:
        request = REQUESTS.get(command.verb)
        if request is None:
            return f"the {command.verb} operation"
        args = dict(command.args)
        try:
            request = request.format(**args)
        except KeyError:
            pass
        return request

    def value(self, value: Any) -> str:
        if isinstance(value, Duration):
            return f"{value.seconds:g}"
        return json.dumps(value, ensure_ascii=False, default=str)


HTTP = HttpFace()


def error_body(exc: AgentError) -> dict[str, Any]:
    """The JSON an error answers with: kind, message, hint (the runtime's meaning in this face's
    words), the setting it is about, and the status; `detail` as FastAPI's own errors have it."""
    body = exc.as_dict(HTTP)
    body.pop("exit_code", None)
    body["next"] = [HTTP.command(Command(n["verb"], **n.get("args", {}))) for n in body.get("next", []) if "verb" in n]
    body["detail"] = body["message"] if not body.get("hint") else f"{body['message']} ({body['hint']})"
    return body


def problem(status: int, kind: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """An error of the HTTP layer itself (authentication, a body too large, a path not found) in the same shape."""
    detail = message if not hint else f"{message} ({hint})"
    return {"error": kind, "message": message, "hint": hint, "setting": None, "value": None, "next": [], "status": status, "detail": detail}
