"""The commands that fork, compare and draw: fork, diff, graph show (`--set` on resume is in commands/run.py).

Each parses, calls one runtime function (runtime/threads/fork.py, runtime/threads/diff.py, runtime/runs/diagram.py)
and renders; cli.py adds them to the `agent` app.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from commands.options import DEFAULT_DB, DbOpt, DebugOpt, JsonOpt, ThreadOpt, check_thread_id
from commands.output import err, handles_errors, jsonable, open_db, out, print_json

app = typer.Typer()

SHORT = 72
"""Characters of a value shown in a diff for people (--json has every value in full)."""

graph_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Look at a graph: agent graph show NAME.")
app.add_typer(graph_app, name="graph")


@app.command()
@handles_errors
def fork(
    thread: ThreadOpt,
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", metavar="CHECKPOINT", help="Checkpoint to fork at: full id, unique id prefix, or step number.")],
    new_thread: Annotated[str, typer.Option("--new-thread", metavar="THREAD", help="Id of the new thread; must not exist.")],
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Copy a thread's state at a checkpoint into a new thread, to continue there.

    The new thread gets the same graph and run settings, the checkpoint's state as its starting
    point, and a queue's items and results; agent resume --thread NEW continues it, and the
    old thread is not touched.

    Example: agent fork --thread docs --checkpoint 2 --new-thread docs-b
    """
    from runtime.threads.fork import fork_thread

    check_thread_id(new_thread)
    with open_db(db) as database:
        result = fork_thread(database, thread, checkpoint, new_thread)
    if as_json:
        print_json(result.as_dict())
        return
    copied = f", {result.store_items} store item(s) copied" if result.store_items else ""
    out(f"Forked thread {thread} at step {result.step} ({result.source_checkpoint_id}) into {result.thread_id}{copied}")
    if result.next:
        err(f"Continue it with: agent resume --thread {result.thread_id}  (next: {', '.join(result.next)})")
    else:
        err(f"That checkpoint is the end of its branch: nothing runs from it (see agent state --thread {result.thread_id})")


@app.command()
@handles_errors
def diff(
    thread: ThreadOpt,
    from_: Annotated[Optional[str], typer.Option("--from", metavar="CHECKPOINT", help="The older checkpoint (default: the parent of --to).")] = None,
    to: Annotated[Optional[str], typer.Option("--to", metavar="CHECKPOINT", help="The newer checkpoint (default: the latest).")] = None,
    db: DbOpt = DEFAULT_DB,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show what changed in a thread's state between two checkpoints, one line per change.

    Each change is named by its path in the state (plan[2].status, notes[0], meta.owner): added,
    removed, or changed (old -> new). By default the latest checkpoint against its parent: what the
    last step did. Checkpoints are named as everywhere (id, id prefix, step). Long values are
    shortened; --json has them in full.

    Example: agent diff --thread docs --from 1 --to 2
    """
    from runtime.threads.diff import diff_checkpoints

    with open_db(db) as database:
        result = diff_checkpoints(database, thread, from_, to)
    if as_json:
        print_json(result.as_dict())
        return
    before, after = result.before, result.after
    origin = f"step {before['step']} ({before['checkpoint_id']})" if before else "(empty state)"
    err(f"thread {thread}: {origin} -> step {after['step']} ({after['checkpoint_id']})")
    for change in result.changes:
        out(f"{change.op:<7} {change.path}: {_describe(change)}")
    if not result.changes:
        out("(no changes)")
    if result.unchanged:
        err(f"unchanged: {', '.join(result.unchanged)}")


def _describe(change: Any) -> str:
    if change.op == "added":
        return _short(change.new)
    if change.op == "removed":
        return _short(change.old)
    return f"{_short(change.old, SHORT // 2)} -> {_short(change.new, SHORT // 2)}"


def _short(value: Any, limit: int = SHORT) -> str:
    text = json.dumps(value, default=jsonable, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + f"… ({len(text):,} chars)"


@graph_app.command("show")
@handles_errors
def graph_show(
    name: Annotated[str, typer.Argument(metavar="GRAPH", help="A built-in graph (agent graphs), or path/file.py:attr or package.module:attr.")],
    format: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help="ascii (a drawing for the terminal) or mermaid.")] = "ascii",
    as_json: Annotated[bool, typer.Option("--json", help="Print the nodes and edges as JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Draw a graph: its nodes and edges, as an ASCII drawing, Mermaid text or JSON.

    Example: agent graph show task_queue --format mermaid
    """
    from runtime.runs.diagram import draw_graph, graph_structure

    if as_json:
        print_json(graph_structure(name))
        return
    out(draw_graph(name, format))
