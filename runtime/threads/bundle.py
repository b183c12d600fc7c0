"""Moving a thread to another database: `agent export --thread T` and `agent import FILE`.

Export writes one thread into a bundle (runtime/threads/bundle_format.py): its registry entry,
its spend, every checkpoint of every namespace with its parent (so the history and its branches
are the same), the pending writes, and the items the store keeps under its namespaces (a
queue's items and results). Everything is read through the storage seam (the checkpointer's
`list` and `stored_writes`, the parts' reads) inside one read snapshot, so a thread that a
live process is running exports as it was at one moment. Values go in as the checkpointer's
serializer makes them, so the bundle does not depend on the backend it came from or goes to.

Import checks the whole bundle before it writes, then writes the thread in one transaction
through the same seam (`put`, `put_writes`, the parts' writes): a bundle that is not one, cut
short, damaged or newer, or a thread id that is taken, leaves the database as it was. A thread
exported while it ran is imported as `stopped`: nobody runs it here until it is resumed. Run
settings never hold secrets (keys come from the environment), so the bundle holds none either.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runtime.errors import BadInput, Command, Message, Placeholder, Setting, ThreadExists
from runtime.store.database import Database
from runtime.store.parts import immediate, namespaces, snapshot, spend
from runtime.store.parts import progress as progress_rows
from runtime.store.parts import threads as thread_rows
from runtime.store.seam import SpendRow, StoreItem
from runtime.threads import registry as threads
from runtime.threads.bundle_format import BundleWriter, Source, check_bundle, damaged, read_records, typed, untyped
from runtime.threads.stored_state import reading_checkpoints

PAGE = 200
"""Checkpoints read together while exporting."""


@dataclass
class BundleReport:
    """What an export wrote or an import stored."""

    thread_id: str
    source_thread_id: str
    graph: str
    status: str
    checkpoints: int
    writes: int
    store_items: int

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def export_thread(db: Database, thread_id: str, output: str | os.PathLike | IO[bytes]) -> BundleReport:
    """Write thread `thread_id` as a bundle to `output`: a binary stream, or a file path (written
    whole or not at all, readable by its owner only). ThreadNotFound before anything is written."""
    threads.get_thread(db, thread_id)
    if not isinstance(output, (str, os.PathLike)):
        return _export(db, thread_id, output)
    path = Path(output)
    partial = path.with_name(path.name + ".part")
    try:
        fd = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise BadInput(
            Message("cannot write {path}: {why}", path=str(path), why=exc.strerror, value=str(path)),
            Message("give {} a path in a directory you can write to", Setting("output")),
        ) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            report = _export(db, thread_id, stream)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return report


def _export(db: Database, thread_id: str, stream: IO[bytes]) -> BundleReport:
    from state.storage import thread_label

    saver = db.checkpointer()
    with snapshot(db.conn):
        record = threads.get_thread(db, thread_id)
        writer = BundleWriter(stream, thread_id, time.time())
        writer.write(
            "thread", graph=record.graph, graph_version=record.graph_version, status=record.status, settings=record.settings,
            created_at=record.created_at, updated_at=record.updated_at, steps=record.steps, error=record.error,
        )  # fmt: skip
        if (spent := spend.get(db.conn, thread_id)) is not None:
            writer.write("spend", **spent._asdict())
        if (reported := progress_rows.get(db.conn, thread_id)) is not None:
            writer.write("progress", figures=reported[0], updated_at=reported[1])
        by_namespace: dict[str, dict[str, str | None]] = {}
        for ns, cid, parent in saver.thread_checkpoints(thread_id):
            by_namespace.setdefault(ns, {})[cid] = parent
        with reading_checkpoints(db, thread_id):
            for ns, parents in by_namespace.items():
                NamespaceExport(saver, writer, thread_id, ns, parents).run()
        for prefix in namespaces.of_thread(db.conn, thread_label(thread_id)):
            for item in namespaces.items(db.conn, prefix):
                writer.write("item", namespace=prefix.split("."), **item._asdict())
        writer.close()
    counts = writer.counts
    return BundleReport(thread_id, thread_id, record.graph, record.status, counts["checkpoint"], counts["writes"], counts["item"])


class NamespaceExport:
    """The checkpoints of one namespace, oldest first, each after its parent, with their writes.

    Each checkpoint carries only the values its parent does not have (a channel at a version the
    parent lacks); what is kept in memory is each written checkpoint's channel versions."""

    def __init__(self, saver: Any, writer: BundleWriter, thread_id: str, ns: str, parents: dict[str, str | None]) -> None:
        self.saver, self.writer, self.ns = saver, writer, ns
        self.config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        self.thread_id = thread_id
        self.parents = parents
        self.versions: dict[str, dict[str, Any]] = {}
        self.waiting: dict[str, list[tuple[Any, list[tuple]]]] = {}
        """Checkpoints whose parent, stored but not written yet, has a larger id (a clock set back)."""

    def run(self) -> None:
        ids = list(self.parents)
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            following = ids[start + PAGE] if start + PAGE < len(ids) else None
            before = {"configurable": {"checkpoint_id": following}} if following else None
            # The PAGE newest below the next page's first: this page, newest first.
            loaded = list(self.saver.list(self.config, before=before, limit=len(chunk)))[::-1]
            writes = self.saver.stored_writes(self.thread_id, self.ns, chunk)
            for item in loaded:
                cid = item.config["configurable"]["checkpoint_id"]
                parent = self.parents.get(cid)
                if parent in self.parents and parent not in self.versions:
                    self.waiting.setdefault(parent, []).append((item, writes.get(cid, [])))
                else:
                    self._write(item, writes.get(cid, []))

    def _write(self, item: Any, writes: list[tuple]) -> None:
        dumps = self.saver.serde.dumps_typed
        checkpoint, cid = item.checkpoint, item.config["configurable"]["checkpoint_id"]
        parent = item.parent_config["configurable"]["checkpoint_id"] if item.parent_config else None
        own = checkpoint["channel_versions"]
        before = self.versions.get(parent) if parent else None
        changed = [ch for ch, version in own.items() if before is None or before.get(ch) != version]
        values = checkpoint.get("channel_values") or {}
        self.writer.write(
            "checkpoint", ns=self.ns, id=cid, parent=parent,
            checkpoint=typed(dumps({**checkpoint, "channel_values": {}})), metadata=typed(dumps(item.metadata)),
            changed=changed, values={ch: typed(dumps(values[ch])) for ch in changed if ch in values},
        )  # fmt: skip
        self.versions[cid] = dict(own)
        by_task: dict[tuple[str, str], list[list[Any]]] = {}
        for task_id, channel, type_, value, task_path, idx in writes:
            by_task.setdefault((task_id, task_path), []).append([idx, channel, typed((type_, value))])
        for (task_id, task_path), rows in sorted(by_task.items()):
            self.writer.write("writes", ns=self.ns, checkpoint=cid, task_id=task_id, task_path=task_path, writes=sorted(rows))
        for child, child_writes in self.waiting.pop(cid, []):
            self._write(child, child_writes)


def import_thread(db: Database, source: Source, thread_id: str | None = None) -> BundleReport:
    """Store the thread in bundle `source` (a file's path, or a binary stream read from its
    start) under its own id, or `thread_id`; all of
    it or, on any problem, nothing. BundleUnreadable for a file that is not a whole bundle this
    version reads, ThreadExists for an id this database has."""
    info = check_bundle(source)
    new_id = thread_id or info.thread_id
    threads.check_thread_id(new_id)
    _refuse_taken(db, new_id, source)
    importer = ThreadImport(db, new_id)
    try:
        with immediate(db.conn):
            _refuse_taken(db, new_id, source)  # again, now that the write lock is held
            importer.run(source)
    except BaseException:
        importer.saver.forget_thread(new_id)  # it remembers checkpoints it put, which are gone
        raise
    return importer.report(info.thread_id)


def _refuse_taken(db: Database, thread_id: str, source: Source) -> None:
    if thread_rows.get(db.conn, thread_id) is None and not threads.has_saved_work(db.conn, thread_id):
        return
    raise ThreadExists(
        f"thread {thread_id!r} already exists in {db.path}",
        Message(
            "import it under another id: {import_}, or into another database ({db})",
            import_=Command("import", source=str(source) if isinstance(source, (str, os.PathLike)) else Placeholder("FILE"), thread_id=Placeholder("NEW")), db=Setting("path"),
        ),
    )


class ThreadImport:
    """The records of a bundle, stored under `thread_id` inside the caller's transaction."""

    def __init__(self, db: Database, thread_id: str) -> None:
        self.db, self.thread_id = db, thread_id
        self.saver = db.checkpointer()
        self.graph, self.status = "", ""
        self.counts = {"checkpoint": 0, "writes": 0, "item": 0}
        self.stored: dict[str, set[str]] = {}
        """Per namespace, the checkpoints stored so far."""
        self.last: tuple[str, str, dict[str, Any]] | None = None
        """The last checkpoint stored (namespace, id, values): usually the next one's parent."""

    def run(self, source: Source) -> None:
        records = read_records(source)
        next(records)  # the header, checked already
        for record in records:
            kind = record["kind"]
            try:
                if kind == "end":
                    if not self.graph:
                        raise ValueError("no thread record")
                    return
                getattr(self, f"_{kind}")(record)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise damaged(source, f"a {kind} record does not read ({type(exc).__name__}: {exc})") from None
            if kind in self.counts:
                self.counts[kind] += 1
        raise damaged(source, "it ends before its last record")

    def report(self, source_thread_id: str) -> BundleReport:
        c = self.counts
        return BundleReport(self.thread_id, source_thread_id, self.graph, self.status, c["checkpoint"], c["writes"], c["item"])

    def _thread(self, record: dict[str, Any]) -> None:
        owner = threads.this_process()
        self.graph = record["graph"]
        self.status = "stopped" if record["status"] == "running" else str(record["status"])
        conn = self.db.conn
        if not thread_rows.insert(conn, self.thread_id, self.graph, str(record["graph_version"]), dict(record["settings"]), owner, float(record["created_at"])):
            raise ValueError("a second thread record")
        thread_rows.release(conn, self.thread_id, owner.pid, self.status, record["error"], int(record["steps"]), float(record["updated_at"]))
        self._bind_graph()

    def _bind_graph(self) -> None:
        """With its graph loaded (when it may be here), the saver records which tasks run next
        from each checkpoint, as the original run did (what history shows); otherwise history
        works that out as it reads."""
        from graphs import GraphLoadError, load_graph
        from runtime.policy.trust import is_trusted

        if not is_trusted(self.graph, attended=True):
            return
        try:
            spec = load_graph(self.graph)
        except GraphLoadError:
            return
        self.saver.bind_graph(spec.build().compile(checkpointer=self.saver))

    def _spend(self, record: dict[str, Any]) -> None:
        row = SpendRow(
            int(record["input_tokens"]), int(record["output_tokens"]), float(record["cost_usd"]), int(record["calls"]), int(record.get("unpriced_calls", 0))
        )
        spend.add(self.db.conn, self.thread_id, row, time.time())

    def _progress(self, record: dict[str, Any]) -> None:
        progress_rows.put(self.db.conn, self.thread_id, dict(record["figures"]), float(record["updated_at"]))

    def _checkpoint(self, record: dict[str, Any]) -> None:
        loads = self.saver.serde.loads_typed
        ns, cid, parent = str(record["ns"]), str(record["id"]), record["parent"]
        checkpoint, metadata = loads(untyped(record["checkpoint"])), loads(untyped(record["metadata"]))
        versions, changed = checkpoint["channel_versions"], set(record["changed"])
        stored = self.stored.setdefault(ns, set())
        inherited = self._values_of(ns, parent) if parent in stored else {}
        values = {ch: value for ch, value in inherited.items() if ch in versions and ch not in changed}
        values.update({ch: loads(untyped(value)) for ch, value in record["values"].items()})
        checkpoint["channel_values"] = values
        config = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ns, **({"checkpoint_id": parent} if parent else {})}}
        self.saver.put(config, checkpoint, metadata, {ch: versions[ch] for ch in changed if ch in versions})
        stored.add(cid)
        self.last = (ns, cid, values)

    def _values_of(self, ns: str, cid: str) -> dict[str, Any]:
        if self.last is not None and self.last[:2] == (ns, cid):
            return self.last[2]
        found = self.saver.get_tuple({"configurable": {"thread_id": self.thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}})
        return dict(found.checkpoint.get("channel_values") or {})

    def _writes(self, record: dict[str, Any]) -> None:
        loads = self.saver.serde.loads_typed
        config = {"configurable": {"thread_id": self.thread_id, "checkpoint_ns": str(record["ns"]), "checkpoint_id": str(record["checkpoint"])}}
        rows = sorted(record["writes"])
        regular = [(channel, loads(untyped(value))) for idx, channel, value in rows if idx >= 0]
        special = [(channel, loads(untyped(value))) for idx, channel, value in rows if idx < 0]
        for writes in (regular, special):  # LangGraph's special writes (errors, interrupts) keep their own places
            if writes:
                self.saver.put_writes(config, writes, str(record["task_id"]), str(record["task_path"]))

    def _item(self, record: dict[str, Any]) -> None:
        from state.storage import thread_label

        kind, _label, *rest = [str(part) for part in record["namespace"]]
        prefix = ".".join([kind, thread_label(self.thread_id), *rest])
        item = StoreItem(str(record["key"]), record["value"], float(record["created_at"]), float(record["updated_at"]))
        namespaces.put_items(self.db.conn, prefix, [item])
