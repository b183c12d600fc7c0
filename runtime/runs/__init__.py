"""Runs: preparing a run of a graph on a thread and driving it to its end.

`runner` (run, resume, retry-failed), `approvals` (answering a run's pending approvals, which
resumes it), `diagram` (a graph's structure, for `graph show`).
"""
