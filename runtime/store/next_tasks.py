"""Which tasks run next from a checkpoint, computed from the compiled graph's triggers: what the
saver records in each checkpoint's `next` column when it is bound to its graph (`bind_graph`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.checkpoint.base import Checkpoint

from runtime.store.schema import send_targets

_TASKS = "__pregel_tasks"


def _value_means_available() -> tuple[type, ...]:
    from langgraph.channels.ephemeral_value import EphemeralValue
    from langgraph.channels.last_value import LastValue

    return (EphemeralValue, LastValue)


_VALUE_MEANS_AVAILABLE = _value_means_available()
"""Channel types that store a value exactly when they are available (checked without rebuilding them)."""


class NextTasks:
    """Which tasks run from a checkpoint, computed as LangGraph's `prepare_next_tasks` does,
    from the compiled graph's triggers, without building the tasks or their input.

    Pushed tasks (each `Send` in the task channel) come first, then each node one of whose
    trigger channels is available at a version the node has not seen, in the graph's node order.
    """

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.triggers = {name: tuple(node.triggers) for name, node in graph.nodes.items()}
        self.specs = {ch: graph.channels[ch] for t in self.triggers.values() for ch in t if ch in graph.channels}
        self.by_channel: dict[str, set[str]] = {}
        for name, triggers in self.triggers.items():
            for ch in triggers:
                self.by_channel.setdefault(ch, set()).add(name)
        self._candidates: dict[tuple[str, ...], list[str]] = {}

    def __call__(self, checkpoint: Checkpoint) -> list[str]:
        values = checkpoint["channel_values"]
        versions = checkpoint["channel_versions"]
        names = [n for n in send_targets(values[_TASKS]) if n in self.triggers] if _TASKS in values else []
        if not versions:
            return names
        seen_by_node = checkpoint["versions_seen"]
        available: dict[str, bool] = {}
        for name in self._candidates_for(checkpoint.get("updated_channels")):
            seen = seen_by_node.get(name)
            for ch in self.triggers[name]:
                version = versions.get(ch)
                if version is None or (seen is not None and ch in seen and not version > seen[ch]):
                    continue
                if ch not in available:
                    available[ch] = self._available(ch, values)
                if available[ch]:
                    names.append(name)
                    break
        return names

    def _candidates_for(self, updated: Sequence[str] | None) -> Sequence[str]:
        """The nodes a step's updated channels trigger (as LangGraph narrows them), in graph order;
        every node when the checkpoint does not say what was updated."""
        if not updated:
            return tuple(self.triggers)
        key = tuple(updated)
        found = self._candidates.get(key)
        if found is None:
            triggered = {n for ch in updated for n in self.by_channel.get(ch, ())}
            found = [n for n in self.triggers if n in triggered]
            if len(self._candidates) < 1024:
                self._candidates[key] = found
        return found

    def _available(self, channel: str, values: Mapping[str, Any]) -> bool:
        spec = self.specs.get(channel)
        if spec is None or channel not in values:
            return False
        if type(spec) in _VALUE_MEANS_AVAILABLE:
            return True
        return spec.from_checkpoint(values[channel]).is_available()
