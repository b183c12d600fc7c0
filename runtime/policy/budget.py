"""Budgets: what a thread's model calls have spent, and the limits a run stops at.

Every chat model call made inside a run, by our nodes or a user's graph, whatever the provider,
reports its usage (tokens in and out, as the model counted them) to the run's `SpendMeter`
through LangChain's callbacks (runtime/policy/metering.py); the meter prices it with the model
that answered (runtime/policy/prices.py) and the runner adds it to the thread's row of
`agent_spend` every `FLUSH_SECONDS` and when the run ends. A model the price table does not
know has its tokens counted and its cost unknown (`unpriced_calls`); a run with a cost limit
cannot hold it to that limit, so such a call stops the run as its budget would. The spend belongs to the thread: retries, resumes,
forks and `retry-failed` add to it and never reset it.

A run's limits are its `max_tokens` / `max_cost` (run settings, stored with the thread), held
to the system-wide ceilings (runtime/policy/ceilings.py). Once the spend reaches a limit, the
meter asks the run to drain: no new model call or queue item starts, the calls in flight finish
and are saved, and the run stops at the next node boundary with status `budget_exceeded`. The
spend may pass the limit by what was in flight when it was reached.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from runtime.store.parts import spend as spend_rows
from runtime.store.database import Database
from runtime.store.seam import SpendRow
from runtime.errors import BadInput, Message, Setting
from runtime.policy.ceilings import COST_CEILING_ENV, TOKENS_CEILING_ENV, system_ceiling
from runtime.policy.prices import FORMAT, cost_usd, model_name, price_for

if TYPE_CHECKING:  # runtime.policy.settings imports the model factory: not for read-only commands
    from runtime.policy.settings import RunSettings

BUDGET = "budget"
"""The drain reason of a run stopped by its budget."""
LOW_FRACTION = 0.2
"""Under this share of the budget left, routine and strong steps alike go to the cheap model."""
FLUSH_SECONDS = 0.5


@dataclass
class Spend:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    """The estimated cost of the calls whose model has a price."""
    calls: int = 0
    unpriced_calls: int = 0
    """Calls of models the price table does not know: counted in tokens, their cost unknown."""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_known(self) -> bool:
        return not self.unpriced_calls

    def as_dict(self) -> dict[str, Any]:
        """`cost_usd` is None when some calls were of a model without a price (`unpriced_calls`)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6) if self.cost_known else None,
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
        }


@dataclass(frozen=True)
class Limits:
    max_tokens: int | None
    max_cost: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "max_cost": self.max_cost}


def run_limits(settings: RunSettings) -> Limits:
    """The run's own limits, or the system-wide ceilings where it sets none (settings are
    checked against the ceilings when they are resolved)."""
    tokens = settings.max_tokens or system_ceiling(TOKENS_CEILING_ENV)
    cost = settings.max_cost or system_ceiling(COST_CEILING_ENV)
    return Limits(int(tokens) if tokens else None, float(cost) if cost else None)


def check_budget_settings(settings: RunSettings) -> Limits:
    """Raise BadInput (before anything is written) when a cost limit cannot be enforced."""
    limits = run_limits(settings)
    if limits.max_cost is not None:
        for spec in filter(None, (settings.model, settings.cheap_model)):
            if price_for(spec) is None:
                raise BadInput(
                    f"a cost budget needs a price for model {spec!r}, and the price table has none",
                    Message(
                        "add it to a prices file and point AGENT_PRICES at it ({format}), or use {tokens}",
                        format='{"models": {"NAME": {"input": USD, "output": USD}}}', tokens=Setting("max_tokens"),
                    ),
                )
    return limits


def get_spend(db: Database, thread_id: str) -> Spend:
    row = spend_rows.get(db.conn, thread_id)
    return Spend(*row) if row else Spend()


def spend_by_thread(db: Database) -> dict[str, Spend]:
    return {thread_id: Spend(*row) for thread_id, row in spend_rows.by_thread(db.conn).items()}


def add_spend(db: Database, thread_id: str, spend: Spend) -> None:
    """Add to the thread's spend; one statement, so concurrent adders never lose a count."""
    if not spend.calls and not spend.tokens:
        return
    spend_rows.add(db.conn, thread_id, SpendRow(spend.input_tokens, spend.output_tokens, spend.cost_usd, spend.calls, spend.unpriced_calls), time.time())


def budget_view(spend: Spend, limits: Limits) -> dict[str, Any]:
    """What `agent status` and `agent threads --json` show: the spend, the limits, what is left."""
    view = spend.as_dict()
    view.update(limits.as_dict())
    view["exceeded"] = exceeded(spend, limits)
    return view


def exceeded(spend: Spend, limits: Limits) -> bool:
    """Over a limit, or under a cost limit with calls whose cost is unknown."""
    return bool(
        (limits.max_tokens is not None and spend.tokens >= limits.max_tokens)
        or (limits.max_cost is not None and (spend.cost_usd >= limits.max_cost or not spend.cost_known))
    )


def exceeded_message(spend: Spend, limits: Limits, unpriced: Iterable[str] = ()) -> str:
    """Why the run stopped; `unpriced`: the models without a price that answered in this run."""
    if limits.max_cost is not None and not spend.cost_known:
        named = ", ".join(repr(name) for name in sorted(unpriced)) or f"{spend.unpriced_calls} calls of models"
        return (
            f"a cost budget needs a price for every model, and the price table has none for {named}; stopped at a node "
            f"boundary. Add it to a prices file named by AGENT_PRICES ({FORMAT}), or hold the thread to a token limit instead"
        )
    parts = []
    if limits.max_cost is not None and spend.cost_usd >= limits.max_cost:
        parts.append(f"spent ${spend.cost_usd:.4f} of its ${limits.max_cost:g} budget")
    if limits.max_tokens is not None and spend.tokens >= limits.max_tokens:
        parts.append(f"spent {spend.tokens:,} of its {limits.max_tokens:,} tokens")
    return "the thread " + " and ".join(parts) + "; stopped at a node boundary"


class SpendMeter:
    """The spend of one run, over what the thread had spent before it; thread-safe.

    `record` is called once per model call that returned; `on_exceeded` (the run's drain) is
    called once, the first time the spend reaches a limit (at once, if it already has).
    """

    def __init__(self, before: Spend, limits: Limits, on_exceeded: Callable[[], None] | None = None) -> None:
        self.limits = limits
        self._before = before
        self._pending = Spend()
        self._run = Spend()
        self._lock = threading.Lock()
        self._on_exceeded = on_exceeded
        self._fired = False
        self.unpriced: set[str] = set()
        """The models without a price that answered in this run."""
        self._check()

    def record(self, model: str | None, input_tokens: int, output_tokens: int) -> None:
        """One call that returned; `model` is a spec (`openai:gpt-4o`) or the name of the model
        that answered (`gpt-4o-2024-08-06`), priced by the price table."""
        cost = cost_usd(model, input_tokens, output_tokens)
        with self._lock:
            for part in (self._pending, self._run):
                part.input_tokens += input_tokens
                part.output_tokens += output_tokens
                part.cost_usd += cost or 0.0
                part.calls += 1
                part.unpriced_calls += cost is None
            if cost is None:
                self.unpriced.add(model_name(model))
        self._check()

    @property
    def total(self) -> Spend:
        with self._lock:
            b, r = self._before, self._run
            return Spend(
                b.input_tokens + r.input_tokens,
                b.output_tokens + r.output_tokens,
                b.cost_usd + r.cost_usd,
                b.calls + r.calls,
                b.unpriced_calls + r.unpriced_calls,
            )

    @property
    def exceeded(self) -> bool:
        return exceeded(self.total, self.limits)

    def running_low(self) -> bool:
        """Under LOW_FRACTION of a limit left (or none)."""
        spent, limits = self.total, self.limits
        if limits.max_cost and spent.cost_usd >= (1 - LOW_FRACTION) * limits.max_cost:
            return True
        return bool(limits.max_tokens and spent.tokens >= (1 - LOW_FRACTION) * limits.max_tokens)

    def take_pending(self) -> Spend:
        """What was recorded since the last call, for the database."""
        with self._lock:
            pending, self._pending = self._pending, Spend()
        return pending

    def refresh(self, stored: Spend) -> None:
        """The thread's spend as the database has it now, other processes' included (a queue's
        items spent by other workers): from now on the total is that, and what this meter has
        recorded since its last `take_pending`."""
        with self._lock:
            r, p = self._run, self._pending
            self._before = Spend(
                stored.input_tokens - (r.input_tokens - p.input_tokens),
                stored.output_tokens - (r.output_tokens - p.output_tokens),
                stored.cost_usd - (r.cost_usd - p.cost_usd),
                stored.calls - (r.calls - p.calls),
                stored.unpriced_calls - (r.unpriced_calls - p.unpriced_calls),
            )
        self._check()

    def give_back(self, pending: Spend) -> None:
        """What `take_pending` returned, which could not be stored: it goes with the next."""
        with self._lock:
            part = self._pending
            part.input_tokens += pending.input_tokens
            part.output_tokens += pending.output_tokens
            part.cost_usd += pending.cost_usd
            part.calls += pending.calls
            part.unpriced_calls += pending.unpriced_calls

    def _check(self) -> None:
        if not self._fired and self.exceeded:
            self._fired = True
            if self._on_exceeded is not None:
                self._on_exceeded()


def stored_limits(settings: dict[str, Any]) -> Limits:
    """The limits of a thread's stored settings (and the ceilings), for showing them."""
    tokens = settings.get("max_tokens") or system_ceiling(TOKENS_CEILING_ENV)
    cost = settings.get("max_cost") or system_ceiling(COST_CEILING_ENV)
    return Limits(int(tokens) if tokens else None, float(cost) if cost else None)


def thread_budgets(db: Database, records: list[Any]) -> dict[str, dict[str, Any]]:
    """thread id -> `budget_view` for registry records (`agent threads`, `agent status`)."""
    spends = spend_by_thread(db)
    return {r.thread_id: budget_view(spends.get(r.thread_id, Spend()), stored_limits(r.settings)) for r in records}
