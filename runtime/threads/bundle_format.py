"""The thread bundle's format: one thread in a portable file (`agent export`, `agent import`).

A bundle is gzip'd JSON lines, written and read one line at a time, so that a thread of any
length is never held in memory whole. The first line is the header:

    {"format": "agent-thread", "version": 1, "thread_id": "docs", "exported_at": 1767225600.0}

then one record a line, each with a `kind`:

- `thread`: the registry entry: graph, graph_version, status, settings, created_at, updated_at,
  steps, error (never a lease: whoever ran it is on another machine).
- `spend`: what its model calls spent: input_tokens, output_tokens, cost_usd, calls.
- `checkpoint`: ns, id, parent, `checkpoint` (the checkpoint without its values), `metadata`,
  `changed` (the channels whose value it introduced: a version its parent does not have, or every
  channel when its parent is not in the bundle) and `values` (those channels' values). A
  checkpoint's other values are its parent's, so a parent comes before its children.
- `writes`: one task's pending writes of a checkpoint: ns, checkpoint, task_id, task_path,
  writes ([idx, channel, value] each).
- `item`: an item of LangGraph's store under one of the thread's namespaces (a list whose second
  part is the thread's label, state/storage.py): key, value, created_at, updated_at.
- `end`: how many records of each kind came before it; a bundle without it was cut short.

Values (and the checkpoint and metadata) are `[type, base64]`, the pair the checkpointer's
serializer (`dumps_typed`) makes, so any checkpointer, on any backend, reads them back as they were.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from dataclasses import dataclass
from typing import IO, Any, Iterator, Union

from runtime.errors import BundleUnreadable, Command, Message, Placeholder

FORMAT = "agent-thread"
VERSION = 1
KINDS = ("thread", "spend", "progress", "checkpoint", "writes", "item")


def typed(pair: tuple[str, bytes | None]) -> list[str]:
    """A serializer's (type, bytes) as JSON holds it."""
    type_, data = pair
    return [type_, base64.b64encode(data or b"").decode("ascii")]


def untyped(value: list[str]) -> tuple[str, bytes]:
    type_, data = value
    return str(type_), base64.b64decode(data, validate=True)


class BundleWriter:
    """Writes a bundle to a binary stream: the header, then records, then `end` (on `close`)."""

    def __init__(self, stream: IO[bytes], thread_id: str, exported_at: float) -> None:
        self._gzip = gzip.GzipFile(filename="", fileobj=stream, mode="wb", mtime=0)
        self.counts = {kind: 0 for kind in KINDS}
        self._line({"format": FORMAT, "version": VERSION, "thread_id": thread_id, "exported_at": exported_at})

    def write(self, kind: str, **fields: Any) -> None:
        self.counts[kind] += 1
        self._line({"kind": kind, **fields})

    def close(self) -> None:
        self._line({"kind": "end", "counts": self.counts})
        self._gzip.close()

    def _line(self, record: dict[str, Any]) -> None:
        self._gzip.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")


@dataclass
class BundleInfo:
    """What a bundle's header and `end` say."""

    thread_id: str
    version: int
    exported_at: float | None
    counts: dict[str, int]


Source = Union[str, "os.PathLike[str]", IO[bytes]]
"""A bundle: a file's path, or a binary stream that can be read again from its start."""


def shown(source: Source) -> str:
    """How messages name a bundle."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "the bundle given"


def check_bundle(source: Source) -> BundleInfo:
    """Read a bundle through once: BundleUnreadable unless it is one this version reads, whole."""
    counts = {kind: 0 for kind in KINDS}
    info: BundleInfo | None = None
    for record in read_records(source):
        if info is None:
            info = _header(source, record)
        elif record["kind"] == "end":
            if record.get("counts") != counts:
                raise damaged(source, "its records do not add up to what its end says")
            info.counts = counts
            return info
        else:
            counts[record["kind"]] += 1
    raise damaged(source, "it ends before its last record" if info is not None else "it is empty")


def read_records(source: Source) -> Iterator[dict[str, Any]]:
    """The header, then each record, streamed; BundleUnreadable for what is not a bundle's line.
    The header is checked by `check_bundle`; the records after `end` are not read."""
    first = True
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
    try:
        with gzip.open(source, "rb") as lines:
            for line in lines:
                record = _record(source, line, first)
                first = False
                yield record
                if record.get("kind") == "end":
                    return
    except FileNotFoundError:
        raise BundleUnreadable(f"no file {source}", "give the path of a file made by exporting a thread") from None
    except PermissionError:
        raise BundleUnreadable(f"{source} cannot be read: permission denied", "check the file's permissions") from None
    except gzip.BadGzipFile:
        raise not_a_bundle(source) from None
    except (EOFError, zlib.error) as exc:
        raise damaged(source, f"the compressed data {'ends too soon' if isinstance(exc, EOFError) else 'is damaged'}") from None
    except IsADirectoryError:
        raise not_a_bundle(source) from None


def _record(source: Source, line: bytes, first: bool) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise (not_a_bundle(source) if first else damaged(source, "a line is not JSON")) from None
    if first:
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise not_a_bundle(source)
        return record
    if not isinstance(record, dict) or record.get("kind") not in (*KINDS, "end"):
        raise damaged(source, "a record of no known kind")
    return record


def _header(source: Source, header: dict[str, Any]) -> BundleInfo:
    version, thread_id = header.get("version"), header.get("thread_id")
    if not isinstance(version, int) or not isinstance(thread_id, str):
        raise damaged(source, "its header lacks a version or a thread id")
    if version > VERSION:
        raise BundleUnreadable(
            f"{shown(source)} is a thread bundle of format version {version}, newer than this agent reads (version {VERSION})",
            "upgrade agent here (pip install -U agent), or export the thread with this version of agent",
        )
    exported_at = header.get("exported_at")
    return BundleInfo(thread_id, version, exported_at if isinstance(exported_at, (int, float)) else None, {})


def not_a_bundle(source: Source) -> BundleUnreadable:
    return BundleUnreadable(
        f"{shown(source)} is not a thread bundle",
        Message("give a file made by {}", Command("export", thread_id=Placeholder("T"), output=Placeholder("FILE"))),
    )


def damaged(source: Source, why: str) -> BundleUnreadable:
    return BundleUnreadable(
        f"{shown(source)} is a thread bundle that is cut short or damaged: {why}",
        Message("export the thread again and copy the whole file: {}", Command("export", thread_id=Placeholder("T"), output=Placeholder("FILE"))),
    )
