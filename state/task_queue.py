"""State of the `task_queue` graph.

Items and per-item results live in the LangGraph store, keyed by item index, not in the
state: a checkpoint holds only counters and the cursor, so storage grows linearly with the
items processed instead of re-writing every result into every checkpoint.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


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

    batch_start: int
    """First index of the batch dispatched in the current step."""

    cursor: int
    """Index of the next item to dispatch."""

    done: Annotated[int, operator.add]
    """Items that produced a result."""

    failed: Annotated[int, operator.add]
    """Items given up after their last attempt (the failed list is in the results)."""

    input_tokens: Annotated[int, operator.add]
    """Prompt tokens the model reported, over all items."""

    output_tokens: Annotated[int, operator.add]
    """Completion tokens the model reported, over all items."""


class ItemTask(TypedDict):
    """What `dispatch` sends to `process_item` for one item."""

    index: int
    prompt: str
