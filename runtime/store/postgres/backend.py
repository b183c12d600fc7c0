"""PostgreSQL's parts of the storage seam, as one `Backend`: the modules beside this one.

The checkpointer and the store are not among them: they are LangGraph's PostgresSaver and
PostgresStore, opened by the `Database` of a PostgreSQL URL.
"""

from __future__ import annotations

from runtime.store.postgres import checks, control, namespaces, progress_board, queue_rows, rates, registry, schedules, spend, transaction, worker_rows
from runtime.store.seam import Backend

BACKEND = Backend(
    transactions=transaction,
    threads=registry,
    spend=spend,
    rates=rates,
    progress=progress_board,
    queue=queue_rows,
    workers=worker_rows,
    control=control,
    schedules=schedules,
    namespaces=namespaces,
    checks=checks,
)
