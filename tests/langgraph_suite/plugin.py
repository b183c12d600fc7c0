"""A pytest plugin for the upstream run (copied into the upstream tree as `agent_suite_plugin`,
loaded with `-p`): keeps the tests the plan selects, skips (with the reason) those listed as not
applying or as failing with LangGraph's own saver too, marks the known failures as strict
expected failures, and writes the run's outcome as JSON for the wrapper in agent's own suite.
It changes no test body.

The plan (a JSON file named by AGENT_SUITE_PLAN) has `fixtures` (keep the tests that take one
of them; null keeps all), `skip` and `known_failures` (key -> reason, see expectations.py),
`report` (where the outcome goes) and `current` (where the running test's id is kept).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

PLAN = json.loads(Path(os.environ["AGENT_SUITE_PLAN"]).read_text())
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")


def keys_of(nodeid: str) -> tuple[str, ...]:
    """The expectation keys a test matches: its file, and its file::test without parameters."""
    path, _, rest = nodeid.split("[", 1)[0].partition("::")
    path = path.removeprefix("tests/")
    return (path, f"{path}::{rest}") if rest else (path,)


def _listed(nodeid: str, table: dict[str, str]) -> str | None:
    for key in keys_of(nodeid):
        if key in table:
            return table[key]
    return None


_started = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_started] = time.monotonic()


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    """Names the running test, so that a run stopped for taking too long says where it was."""
    Path(PLAN["current"]).write_text(nodeid)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = PLAN["fixtures"]
    if wanted is not None:
        keep, dropped = [], []
        for item in items:
            (keep if set(wanted) & set(getattr(item, "fixturenames", ())) else dropped).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
    for item in items:
        reason = _listed(item.nodeid, PLAN["skip"])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
            continue
        reason = _listed(item.nodeid, PLAN["known_failures"])
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=f"known failure: {reason}", strict=True))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter is not None else {}
    report = {
        "counts": {outcome: len(stats.get(outcome, ())) for outcome in OUTCOMES},
        "failed": sorted({r.nodeid for name in ("failed", "error") for r in stats.get(name, ())}),
        # A known failure that passed: its fix is in, and its entry in expectations.py must go.
        "fixed": sorted({r.nodeid for r in stats.get("failed", ()) if str(r.longrepr).startswith("[XPASS(strict)]")}),
        "skipped": sorted({f"{r.nodeid}: {r.longrepr[2]}" for r in stats.get("skipped", ()) if isinstance(r.longrepr, tuple)}),
        "seconds": round(time.monotonic() - session.config.stash[_started], 1),
        "exitstatus": int(exitstatus),
    }
    Path(PLAN["report"]).write_text(json.dumps(report, indent=2))
