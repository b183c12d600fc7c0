"""The runtime's domain errors. The CLI maps each to one line, a hint and an exit code."""

from __future__ import annotations


class AgentError(Exception):
    """A problem a user can fix; `hint` names the fix or the next command."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class BadInput(AgentError):
    """Malformed or invalid input, options or model spec."""


class InvalidNumber(BadInput):
    """A number a user or the environment gave that the rule refuses (NaN, infinite, negative,
    too small, not whole). `name` is the setting (`max_cost`) or the environment variable
    (`AGENT_MAX_COST_CEILING`); a face shows a setting as it spells it (the CLI: `--max-cost`)."""

    def __init__(self, name: str, value: object, rule: str, hint: str | None = None) -> None:
        self.name = name
        self.value = value
        self.rule = rule
        super().__init__(self.message_for(name), hint)

    def message_for(self, label: str) -> str:
        shown = repr(self.value) if isinstance(self.value, str) else str(self.value)
        return f"{label} must be {self.rule}, not {shown}"


class UnknownGraph(AgentError):
    """A graph name or spec that names no graph."""


class GraphNotTrusted(AgentError):
    """A graph spec read from the database that this command may not import (runtime/policy/trust.py)."""


class DatabaseMissing(AgentError):
    """A read command named a database that does not exist."""


class DatabaseUnusable(AgentError):
    """The database cannot be opened, is damaged, or comes from a newer version."""


class StorageFull(AgentError):
    """The disk that holds the database is full: a run cannot start or go on (not bad input)."""

    exit_code = 1


class ThreadNotFound(AgentError):
    pass


class ThreadExists(AgentError):
    pass


class ThreadBusy(AgentError):
    """Another live process is running the thread."""


class CheckpointNotFound(AgentError):
    pass


class AmbiguousCheckpoint(AgentError):
    pass


class CheckpointUnreadable(AgentError):
    """A stored checkpoint (or its writes) that cannot be read back: stored in a format agent
    refuses, or data that does not decode. Changed outside agent, or damaged; nothing is run."""


class NothingToResume(AgentError):
    pass


class NoResults(AgentError):
    pass


class CannotRetry(AgentError):
    """`retry-failed` on a thread with no queue, no failed items, or an unfinished pass."""


class ScheduleNotFound(AgentError):
    pass


class ScheduleExists(AgentError):
    pass


class ScheduleBusy(AgentError):
    """A schedule whose run is still going, with overlap `skip`."""
