"""Run policy: what a run may do and what it costs.

`settings` (a run's settings and their defaults), `models` (the model a run calls), `prices`,
`budget` (spend and limits), `ceilings` (the system-wide limits on budgets), `limits` (request
and token rates), `shared_rates` (a model's requests a minute across every process,
AGENT_MODEL_RPM), `waits` (how a run waits), `numbers` and `inputs` (the rules for numbers and
JSON a user gives), `trust` (which graph specs a command may import), `times` (how an
instant is written).
"""
