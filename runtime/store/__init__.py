"""Storage: the only code that knows SQLite (and, in `postgres`, PostgreSQL).

Opening a file:
- `database`: opens (and makes, and migrates) the file; hands out each thread's connection, the
  saver, the column reads and, for a run, the async saver and store; the disk-space reserve.
- `connect`: the one connection factory: its PRAGMAs, its busy timeouts, and the rule by which
  writers take turns at the write lock (`WaitingConnection`).
- `transaction`: `immediate`, the write transaction code above the saver takes.
- `schema`: the tables, and the conversions of older files.
- `serde`: the serializer every saver uses (secrets redacted from stored errors).
- `item_store`: LangGraph's store (per-item data), its tables and its async store.

The checkpointer, `saver.AgentSaver`, put together from:
- `rows`: the checkpoint row's columns and how values, their locations and writes are packed in it.
- `writing`: the put (a step as one row, one statement) and writes stored on their own.
- `write_queue`: a task's writes waiting for the step's row to take them, and their flusher thread.
- `reading`: loading checkpoints and their pending writes.
- `columns`: the plain columns history reads (also without a saver, from `Database`).
- `next_tasks`: the tasks that run next from a checkpoint, recorded with it.
- `pruning`: deleting, copying and pruning threads' checkpoints (`AgentSaver.removing()`).
- `wal_checkpoints`: copying the WAL into the file on a worker thread.

The seam: everything above this package talks to storage through the interface written down in
`seam`, which writes the parts down as Protocols, with what each must guarantee, so that another
backend can provide them. SQLite's parts besides the checkpointer and the store are modules of
plain functions on a connection, named for what they hold: `registry` (threads and their leases),
`spend`, `rates` (leaky buckets shared by every process), `control` (pause and cancel requests),
`schedules` (schedules, their occurrences and runs), `namespaces` (a thread's rows in the LangGraph
store) and `checks` (what `agent doctor` reads); `sqlite_backend` names them together as one `seam.Backend`, and
`parts` hands the rooms the parts of the backend whose connection they pass. PostgreSQL's parts are
the package `postgres`, module for module, with its opener (`postgres.database`), its checkpointer
(LangGraph's Postgres savers with fencing, `postgres.saver`) and Procrastinate's dispatch of
queued runs (`postgres.jobs`).
"""
