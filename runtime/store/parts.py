"""The parts of the storage seam that the rooms above use, taken from the backend in use.

The rooms import their parts from here (`from runtime.store.parts import threads`), never from
SQLite's modules, so that another backend is chosen in this module and nowhere above it. Each
name is typed by its Protocol in runtime/store/seam.py, which says what it must do.
"""

from __future__ import annotations

from runtime.store.sqlite_backend import BACKEND

transactions = BACKEND.transactions
immediate = transactions.immediate
snapshot = transactions.snapshot
threads = BACKEND.threads
spend = BACKEND.spend
progress = BACKEND.progress
queue = BACKEND.queue
workers = BACKEND.workers
control = BACKEND.control
schedules = BACKEND.schedules
namespaces = BACKEND.namespaces
checks = BACKEND.checks
