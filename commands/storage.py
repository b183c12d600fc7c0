"""The storage commands of the `agent` CLI: prune, delete, vacuum, doctor.

Each command parses, calls one runtime function (runtime/threads/retention.py, runtime/doctor.py) and
renders; cli.py adds them to the `agent` app.
"""

from typing import Annotated, Optional

import typer

from commands.options import DEFAULT_DB, DbOpt, DebugOpt, JsonOpt, ThreadOpt
from commands.output import err, handles_errors, open_db, out, print_json, table

app = typer.Typer()

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Say what would go, change nothing.")]


@app.command()
@handles_errors
def prune(
    thread: Annotated[Optional[str], typer.Option("--thread", "-t", metavar="THREAD", help="Only this thread (default: every thread).")] = None,
    keep: Annotated[Optional[int], typer.Option("--keep", metavar="N", help="Keep the newest N checkpoints of each thread.")] = None,
    older_than: Annotated[
        Optional[str], typer.Option("--older-than", metavar="DURATION", help="Remove checkpoints older than this, e.g. 30d, 12h.")
    ] = None,
    orphans: Annotated[bool, typer.Option("--orphans", help="Also remove writes and values that belong to no checkpoint.")] = False,
    dry_run: DryRunOpt = False,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Remove old checkpoints. The latest checkpoint of every thread, and everything a kept
    checkpoint needs to be resumed or forked from, always stay. Threads being run are skipped.

    With both --keep and --older-than, a checkpoint goes only when it is beyond the newest N
    and older than the age. Free space goes back to the file system with agent vacuum.

    Example: agent prune --thread docs --keep 100 --dry-run
    """
    from runtime.threads.retention import prune as prune_checkpoints
    from runtime.policy.settings import parse_duration

    age = parse_duration(older_than, "older_than") if older_than is not None else None
    if older_than is not None and age is None:
        age = -1.0  # "0"/"none": refused by the runtime with its message
    with open_db(db) as database:
        report = prune_checkpoints(database, thread=thread, keep=keep, older_than=age, orphans=orphans, dry_run=dry_run)
    if as_json:
        print_json(report.as_dict())
        return
    if report.threads:
        table(
            None,
            ["thread", "checkpoints removed", "kept", "writes removed", "values removed"],
            [[t["thread_id"], t["checkpoints_removed"], t["checkpoints_kept"], t["writes_removed"], t["blobs_removed"]] for t in report.threads],
        )
    verb = "Would remove" if dry_run else "Removed"
    line = f"{verb} {report.checkpoints_removed} checkpoint(s) from {len(report.threads)} thread(s)"
    if orphans:
        line += f", {report.orphans['writes']} orphaned write(s) and {report.orphans['blobs']} orphaned value(s)"
    err(line + (" (dry run: nothing changed)" if dry_run else ""))
    for skipped in report.skipped:
        err(f"Skipped {skipped['thread_id']}: {skipped['reason']}")

@app.command()
@handles_errors
def delete(
    thread: ThreadOpt,
    dry_run: DryRunOpt = False,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Delete a thread and everything it stored: checkpoints, writes, values, its items and
    results in the store, and its registry entry. A thread being run is refused.

    Example: agent delete --thread docs --dry-run
    """
    from runtime.threads.retention import delete_thread

    with open_db(db) as database:
        report = delete_thread(database, thread, dry_run=dry_run)
    if as_json:
        print_json(report.as_dict())
        return
    verb = "Would delete" if dry_run else "Deleted"
    err(
        f"{verb} thread {thread}: {report.checkpoints} checkpoint(s), {report.writes} write(s), {report.blobs} value(s), "
        f"{report.store_items} store item(s)" + (" (dry run: nothing changed)" if dry_run else "")
    )

@app.command()
@handles_errors
def vacuum(dry_run: DryRunOpt = False, db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Give the database file's free space back to the file system (SQLite VACUUM), e.g. after
    agent prune or agent delete. Rewrites the file: refused while a thread is being run.

    Example: agent vacuum --dry-run
    """
    from runtime.threads.retention import vacuum as vacuum_database

    with open_db(db) as database:
        report = vacuum_database(database, dry_run=dry_run)
    if as_json:
        print_json(report.as_dict())
        return
    if dry_run:
        err(f"Would reclaim about {_size(report.reclaimable_bytes)} of {_size(report.bytes_before)} (dry run: nothing changed)")
    else:
        err(f"Database {_size(report.bytes_before)} -> {_size(report.bytes_after)}")

@app.command()
@handles_errors
def doctor(db: DbOpt = DEFAULT_DB, as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Check the database: SQLite integrity, schema version, orphaned writes and values,
    threads recorded as running whose runner is gone. Says how to fix each problem; changes
    nothing. Exits 1 when it finds a problem.

    Example: agent doctor --json
    """
    from commands.cli_face import cli_text
    from runtime.doctor import check_database

    findings = check_database(db)
    if as_json:
        print_json({"ok": all(f.ok for f in findings), "checks": [{**f.as_dict(), "fix": cli_text(f.fix)} for f in findings]})
    else:
        for finding in findings:
            out(f"{'ok' if finding.ok else 'PROBLEM':>7}  {finding.check}: {finding.detail}")
            if finding.fix:
                out(f"{'':>7}  fix: {cli_text(finding.fix)}")
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
