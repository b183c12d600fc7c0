"""State of the `task_queue` graph.

Items and per-item results live in the LangGraph store, keyed by item index, not in the
state: a checkpoint holds only counters and the cursor, so storage grows linearly with the
items processed instead of re-writing every result into every checkpoint, and a checkpoint
is as small at item 10,000 as at item 1.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from typing_extensions import TypedDict


class TaskQueueInput(TypedDict, total=False):
    """What a user passes to `agent run task_queue --input ...`."""

    items: list[Any]
    """The items inline: strings or JSON values."""

    items_file: str
    """A file of items instead: JSON list, JSONL, CSV, text (one item a line) or a directory."""

    items_column: str
    """For CSV: the column that holds the item (default: the first)."""

    prompt: str
    """The prompt template; `{item}` is replaced by each item."""


class TaskQueueState(TaskQueueInput, total=False):
    """The whole state; `items` is emptied once the items are in the store."""

    total: int
    """How many items the queue holds."""

    cursor: int
    """Every item before this index has its final result for the current round."""

    round: int
    """0 for the first pass over the items; each `agent retry-failed` adds one, and only items
    whose result is `failed` from an earlier round are sent again."""

    done: Annotated[int, operator.add]
    """Items whose result is `done`."""

    failed: Annotated[int, operator.add]
    """Items whose result is `failed`: the dead-letter list, kept in the results with each error."""

    input_tokens: Annotated[int, operator.add]
    """Prompt tokens the model reported, over all items and rounds."""

    output_tokens: Annotated[int, operator.add]
    """Completion tokens the model reported, over all items and rounds."""
