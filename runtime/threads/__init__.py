"""Threads: the registry and everything that reads or changes a thread's stored history.

`registry` (threads, their leases), `history` and `history_rows` (checkpoints and state),
`stored_state`, `progress`, `control` (pause and cancel), `fork`, `edit`, `diff`, `retention`
(prune, delete, vacuum).
"""
