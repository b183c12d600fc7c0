"""The dashboard's assets (api/dashboard/: one page, its script and style, shipped with the
package, nothing fetched from elsewhere), served at `/` and `/dashboard/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).with_name("dashboard")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def mount_dashboard(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        index = ASSETS / "index.html"
        if not index.is_file():
            return Response("the dashboard's assets are not installed\n", status_code=404, media_type="text/plain")
        return FileResponse(index, headers=SECURITY_HEADERS)

    @app.get("/ok", tags=["health"])
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/info", tags=["health"])
    async def info() -> dict[str, object]:
        """What LangGraph's clients and Studio ask a server first: its version and what it offers."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("agent")
        except PackageNotFoundError:
            ours = "unknown"
        return {"version": ours, "langgraph_py_version": version("langgraph"), "flags": {"assistants": True, "crons": True, "langsmith": False}}

    if ASSETS.is_dir():
        app.mount("/dashboard", StaticFiles(directory=ASSETS), name="dashboard")
