"""serve: the HTTP API, its streams and the dashboard over the database (api/), with runs driven
in this process (`--workers N`) or by `agent worker` processes on the same database."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.options import DEFAULT_DB, DbOpt, DebugOpt
from commands.output import err, handles_errors, open_db

app = typer.Typer()
TOKEN_ENV = "AGENT_API_TOKEN"


@app.command()
@handles_errors
def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on; anything but loopback needs AGENT_API_TOKEN.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="N", help="Port to listen on.")] = 2024,
    workers: Annotated[int, typer.Option("--workers", metavar="N", help="Runs driven at once in this process; 0 leaves them to agent worker processes.")] = 8,
    config: Annotated[
        Optional[Path], typer.Option("--config", metavar="PATH", help="A langgraph.json whose graphs to serve beside the built-in ones [./langgraph.json if there].")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    debug: DebugOpt = False,
) -> None:
    """Serve the LangGraph Server API (langgraph-sdk, RemoteGraph), agent's own endpoints under
    /agent, live streams and the dashboard at /, over the database every other command uses.
    Runs are queued and driven by this process's workers (--workers) or by agent worker.

    Example: agent serve --port 2024 --workers 16
    """
    from runtime.errors import BadInput

    token = os.environ.get(TOKEN_ENV) or None
    if workers < 0:
        raise BadInput(f"--workers must be 0 or more, not {workers}", "e.g. agent serve --workers 8 (0: runs are left to agent worker)")
    if not 0 < port < 65536:
        raise BadInput(f"--port must be between 1 and 65535, not {port}", "e.g. agent serve --port 2024")
    if not _loopback(host) and not token:
        raise BadInput(f"listening on {host} needs a token: anyone who can reach it could run graphs", f"set {TOKEN_ENV} (clients send it as a bearer token), or listen on 127.0.0.1")
    graphs = served_graphs(config)
    _check_port(host, port)
    with open_db(db, create=True) as database:
        _serve(database, graphs, host, port, workers, token, debug)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    from runtime.errors import BadInput

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}", "pick another --port, or stop what listens there") from None


def served_graphs(config: Path | None) -> dict[str, str]:
    """Graph id -> spec: the built-in graphs, then those the langgraph.json names (its paths taken
    from its own folder). Each is loaded now, so a broken entry stops the server before it starts."""
    from graphs import BUILTIN, GraphLoadError, load_graph
    from runtime.errors import BadInput
    from runtime.policy.trust import TRUSTED_GRAPHS_ENV

    graphs = {name: name for name in BUILTIN}
    path = config if config is not None else Path("langgraph.json")
    if config is None and not path.is_file():
        return graphs
    try:
        declared = json.loads(path.read_text()).get("graphs", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}", "--config names a langgraph.json with a \"graphs\" object") from None
    trusted = []
    for name, target in declared.items():
        if name in BUILTIN and Path(str(target).split(":", 1)[0]).name == "studio.py":
            continue  # the built-in graph, as Studio serves it
        spec = _spec(path.parent, str(target))
        try:
            load_graph(spec)
        except GraphLoadError as exc:
            raise BadInput(f"graph {name!r} of {path}: {exc.message}", "fix the entry, or leave it out of the file") from None
        graphs[name] = spec
        trusted.append(spec.rsplit(":", 1)[0])
    if trusted:  # the graphs it was started with are the graphs its workers may import
        os.environ[TRUSTED_GRAPHS_ENV] = os.pathsep.join(filter(None, [os.environ.get(TRUSTED_GRAPHS_ENV, ""), *trusted]))
    return graphs


def _spec(base: Path, target: str) -> str:
    file, _, attr = target.rpartition(":")
    if file.endswith(".py") or "/" in file:
        return f"{(base / file).resolve()}:{attr}"
    return target


def _serve(database, graphs: dict[str, str], host: str, port: int, workers: int, token: str | None, debug: bool) -> None:
    import logging

    import uvicorn

    from api.app import Server, create_app

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not debug and not os.environ.get("AGENT_DEBUG"):
        # A request that failed is logged as one line (api/app.py); its traceback only with --debug.
        logging.getLogger("uvicorn.error").addFilter(_without_traceback)
    server = Server(database, graphs, token=token, workers=workers)
    shown = f"http://{host}:{port}"
    err(f"Serving {shown} (dashboard at {shown}/, API document at {shown}/docs); {workers or 'no'} run(s) at once in this process. Stop it with Ctrl-C.")

    config = uvicorn.Config(create_app(server), host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    _server_class()(config).run()
    err("Server stopped.")


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, ending with exit 0 after a SIGTERM or Ctrl-C it has shut down for (as
        `agent worker` does; uvicorn's own raises the signal again once it has stopped). A second
        signal stops at once."""

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _without_traceback(record) -> bool:
    record.exc_info, record.exc_text = None, None
    return True
