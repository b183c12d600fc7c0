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


class UnknownGraph(AgentError):
    """A graph name or spec that names no graph."""


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
