"""A thread's history as a tree of branches, drawn as `git log --graph` draws commits.

Resuming from an older checkpoint (`resume --checkpoint`, `--set` on an older one) starts a new
line of checkpoints beside the old one; both stay. Branch 0 is the line that ends at the latest
checkpoint, back to the first one: the line that step numbers name (`--checkpoint 3`). Every other
tip, newest first, gets the next number, and its branch is the run of checkpoints from that tip back
to the first one an earlier branch already holds: the checkpoint it forked from.

Only ids and parents are read (no checkpoint is deserialised), so the tree costs what a listing costs.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence


class TreeRow(Protocol):
    checkpoint_id: str
    parent_id: str | None
    branch: int
    lane: int


def find_branches(links: Iterable[tuple[str, str | None]]) -> dict[str, int]:
    """Per checkpoint id, its branch number, from a thread's (checkpoint_id, parent_id) pairs."""
    parent_of = dict(links)
    has_child = {parent for parent in parent_of.values() if parent is not None}
    tips = sorted((cid for cid in parent_of if cid not in has_child), reverse=True)  # ids grow with time
    branch_of: dict[str, int] = {}
    for number, tip in enumerate(tips):
        cursor: str | None = tip
        while cursor is not None and cursor in parent_of and cursor not in branch_of:
            branch_of[cursor] = number
            cursor = parent_of[cursor]
    return branch_of


def fork_points(rows: Sequence[TreeRow]) -> dict[int, TreeRow]:
    """Per branch whose fork point is among `rows` (newest first), the row it forked from.

    The parent of a branch's oldest row is on another branch where it forked; it is missing when
    the rows stop short of it (`--limit`) and None for the thread's first checkpoint.
    """
    shown = {row.checkpoint_id: row for row in rows}
    oldest = {row.branch: row for row in rows}
    return {
        branch: shown[row.parent_id]
        for branch, row in oldest.items()
        if row.parent_id in shown and shown[row.parent_id].branch != branch
    }


def _joining_at(rows: Sequence[TreeRow]) -> dict[str, list[int]]:
    """Per checkpoint id, the branches that forked from it."""
    joining: dict[str, list[int]] = {}
    for branch, origin in fork_points(rows).items():
        joining.setdefault(origin.checkpoint_id, []).append(branch)
    return joining


def assign_lanes(rows: Sequence[TreeRow]) -> None:
    """Set each row's `lane`, the column the drawing puts it in, for rows newest first.

    A branch takes the lowest free column right of the branch it forked from, so it joins
    leftwards; it keeps the column down to the checkpoint it forked from, and the column is free
    below that (or below the thread's first checkpoint). A branch whose fork point is not among
    the rows (`--limit`) keeps its column to the end.
    """
    joining = _joining_at(rows)
    forks = fork_points(rows)
    lane_of: dict[int, int] = {}
    busy: set[int] = set()
    for row in rows:
        busy.difference_update(lane_of[branch] for branch in joining.get(row.checkpoint_id, ()))
        if row.branch not in lane_of:
            origin = forks.get(row.branch)
            lane = lane_of[origin.branch] + 1 if origin is not None else 0
            while lane in busy:
                lane += 1
            lane_of[row.branch] = lane
            busy.add(lane)
        row.lane = lane_of[row.branch]
        if row.parent_id is None:
            busy.discard(row.lane)


def draw_tree(rows: Sequence[TreeRow]) -> list[tuple[str, TreeRow | None]]:
    """Lines of the drawing, each (graph, row), for rows newest first with their lanes set.

    A row is `*` in its lane, `|` in the lanes of the branches that pass beside it. Just above the
    checkpoint a branch forked from comes a joining line with no row: `|/` from the lane beside,
    `|---'` from one further left. Plain ASCII, so it reads the same in a pipe or a file.
    """
    joining = _joining_at(rows)
    lane_of = {row.branch: row.lane for row in rows}
    busy: set[int] = set()
    lines: list[tuple[str, TreeRow | None]] = []
    for row in rows:
        for lane in sorted(lane_of[branch] for branch in joining.get(row.checkpoint_id, ())):
            busy.discard(lane)
            lines.append((_joining(busy, lane, row.lane), None))
        busy.add(row.lane)
        cells = ["|" if lane in busy else " " for lane in range(max(busy) + 1)]
        cells[row.lane] = "*"
        lines.append((" ".join(cells).rstrip(), row))
        if row.parent_id is None:
            busy.discard(row.lane)
    return lines


def _joining(busy: set[int], lane: int, into: int) -> str:
    """The line where the branch in `lane` joins the one in `into`, left of it; `busy` are the
    lanes passing beside."""
    chars = list(" ".join("|" if other in busy else " " for other in range(max(busy | {lane}) + 1)))
    if lane == into + 1:
        chars[2 * lane - 1] = "/"
    else:
        chars[2 * lane] = "'"
        for position in range(2 * into + 1, 2 * lane):
            if chars[position] == " ":
                chars[position] = "-"
    return "".join(chars).rstrip()
