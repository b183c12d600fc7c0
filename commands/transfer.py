"""The commands that move a thread between databases: export, import.

Each parses, calls one runtime function (runtime/threads/bundle.py) and renders; cli.py adds
them to the `agent` app. A bundle is binary (gzip'd JSON lines): export writes it to --output or
to stdout, never to a terminal; import reads a file or, given `-`, stdin.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.options import DEFAULT_DB, DbOpt, DebugOpt, JsonOpt, ThreadOpt, check_thread_id
from commands.output import err, handles_errors, open_db, out, print_json

app = typer.Typer()


@app.command()
@handles_errors
def export(
    thread: ThreadOpt,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="PATH", help="Write the bundle to this file (default: stdout).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write a thread to a portable bundle file: every checkpoint and branch, its pending writes,
    a queue's items and results, its graph and settings, its status and its spend.

    A thread that is running may be exported: the bundle is what it was at one moment, read in
    one snapshot while the run goes on. agent import reads the bundle into another database,
    on this machine or another.

    Example: agent export --thread docs --output docs.bundle
    """
    from runtime.errors import BadInput
    from runtime.threads.bundle import export_thread

    if output is None and sys.stdout.isatty():
        raise BadInput("a bundle is binary: it is not written to a terminal", "give --output FILE, or redirect stdout: > docs.bundle")
    with open_db(db) as database:
        if output is None:
            sys.stdout.flush()
            report = export_thread(database, thread, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            report = export_thread(database, thread, output)
    summary = f"Exported thread {thread} ({report.graph}, {report.status}): {report.checkpoints} checkpoint(s), {report.writes} task write(s), {report.store_items} store item(s)"
    if as_json and output is not None:
        print_json(report.as_dict())
    elif as_json:  # stdout holds the bundle
        err(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        err(summary + (f" to {output}" if output is not None else ""))


@app.command("import")
@handles_errors
def import_(
    source: Annotated[str, typer.Argument(metavar="FILE", help="The bundle file, or - to read it from stdin.")],
    thread: Annotated[Optional[str], typer.Option("--thread", "-t", metavar="THREAD", help="Import under this thread id (default: the exported one's).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Read a thread from a bundle made by agent export into this database, ready to inspect and resume.

    The whole bundle is checked first and stored in one transaction: a file that is not a
    bundle, is cut short or damaged, or comes from a newer agent, or a thread id this database
    has already, is refused and nothing is written. A thread exported while it ran is imported
    as stopped.

    Example: agent import docs.bundle --db other.db --thread docs-copy
    """
    from runtime.threads.bundle import import_thread
    from runtime.threads.bundle_format import check_bundle

    if thread is not None:
        check_thread_id(thread)
    with tempfile.TemporaryFile() if source == "-" else contextlib.nullcontext(Path(source)) as bundle:
        if source == "-":  # read twice (checked, then stored): kept in a file meanwhile
            shutil.copyfileobj(sys.stdin.buffer, bundle)
        check_bundle(bundle)  # before the database is opened: a bad file leaves no new database behind
        with open_db(db, create=True) as database:
            report = import_thread(database, bundle, thread)
    if as_json:
        print_json(report.as_dict())
        return
    renamed = f" (exported as {report.source_thread_id})" if report.source_thread_id != report.thread_id else ""
    out(f"Imported thread {report.thread_id}{renamed} ({report.graph}, {report.status}): {report.checkpoints} checkpoint(s), {report.writes} task write(s), {report.store_items} store item(s)")
    if report.status != "completed":
        err(f"Continue it with: agent resume --thread {report.thread_id}")

