"""Storage: the only code that knows SQLite.

`database` opens a file (the one connection factory, its PRAGMAs, immediate transactions) and
hands out the saver, the store and connections; `schema` creates and converts the tables;
`saver` is the LangGraph checkpointer (`AgentSaver`). Everything above this package talks to
storage through the interface written down in `runtime.store.seam`.

`seam` writes the parts down as Protocols, with what each must guarantee, so that another
backend can provide them. SQLite's parts besides the checkpointer and the store are modules of
plain functions on a connection, named for what they hold: `registry` (threads and their
leases), `spend`, `control` (pause and cancel requests), `schedules` (schedules, their
occurrences and runs), `namespaces` (a thread's rows in the LangGraph store) and `checks` (what
`agent doctor` reads); `transaction` makes a read-check-write one step; `sqlite_backend` names
them together as one `seam.Backend`.
"""
