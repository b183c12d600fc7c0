"""Runs: preparing a run of a graph on a thread and driving it to its end.

`runner` (run, resume, retry-failed: the public functions), `plan` (a run prepared and checked
before anything is written), `drive` (a compiled graph driven to its end or a stop), `outcome`
(how a run went and ended), `approvals` (answering a run's pending approvals, which resumes it),
`diagram` (a graph's structure, for `graph show`), `schemas` (a graph's JSON Schemas, as LangGraph's
server answers `/assistants/{id}/schemas`).
"""
