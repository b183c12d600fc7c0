"""PostgreSQL's parts of the storage seam (runtime/store/seam.py), module for module beside
SQLite's in runtime/store/:

- `connect`: the one factory of connections (autocommit, so that a statement outside a
  transaction commits at once, as SQLite's do) and how a database is named in a message.
- `transaction`: `immediate` (BEGIN, then the advisory lock that stands for SQLite's write lock)
  and `snapshot` (a repeatable-read, read-only transaction).
- `schema`: the agent_* tables, their version in `agent_schema`, and the race-safe migration.
- `registry`, `spend`, `progress_board`, `queue_rows`, `worker_rows`, `control`, `schedules`,
  `namespaces` (LangGraph's PostgresStore table `store`, by thread namespace) and `checks`
  (what `agent doctor` reads): the parts, with the same functions as SQLite's.
- `backend`: the parts together as one `seam.Backend`.
- `database`: `open_postgres`, what `runtime.open_database` gives for a postgresql:// URL: the
  set-up of every table (ours and LangGraph's, race-safe), each thread's connection, the savers
  and the store of runs over one connection pool.
- `saver`: the checkpointer, LangGraph's own PostgresSaver and AsyncPostgresSaver (tables
  `checkpoints`, `checkpoint_blobs`, `checkpoint_writes`) with fencing and the seam's members;
  `columns`: its plain reads, without LangGraph. The store is LangGraph's PostgresStore (`store`).
- `jobs`: the dispatch of queued runs to workers on many machines by Procrastinate.

Importing this package needs psycopg (the `postgres` extra); nothing imports it unless PostgreSQL
is the backend in use.
"""
