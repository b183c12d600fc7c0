"""Storage: the only code that knows SQLite.

`database` opens a file (the one connection factory, its PRAGMAs, immediate transactions) and
hands out the saver, the store and connections; `schema` creates and converts the tables;
`saver` is the LangGraph checkpointer (`AgentSaver`). Everything above this package talks to
storage through the interface written down in `runtime.store.seam`.
"""
