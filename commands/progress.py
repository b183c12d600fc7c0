"""Showing progress: the one place that renders it, for `agent run`, `resume`, `retry-failed`
and `agent status --watch`.

Four modes: `live`, a bar redrawn in place on a terminal (rich); `plain`, a line every
AGENT_PROGRESS_EVERY seconds (default 10) when stderr is not a terminal; `json`, one JSON event
a line (default at most one `progress` event a second); `quiet`, nothing but warnings. Everything
goes to stderr: stdout keeps the result (the run's summary, the status). The figures themselves
are computed in runtime.threads.progress, so the live bar and `agent status` agree.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, TextIO

from commands.terminal import printable
from runtime.threads.progress import ProgressSnapshot

MODES = ("live", "plain", "json", "quiet")
SHOWN_FAILURES = 10
"""Item failures printed one by one (live and plain); later ones are only counted."""


def progress_mode(quiet: bool, as_json: bool, stream: TextIO | None = None) -> str:
    if quiet:
        return "quiet"
    if as_json:
        return "json"
    return "live" if (stream or sys.stderr).isatty() else "plain"


def _every(mode: str) -> float:
    from runtime.policy.numbers import env_number

    every = env_number("AGENT_PROGRESS_EVERY", unit="seconds")
    return float(every) if every is not None else (1.0 if mode == "json" else 10.0)


def duration(seconds: float | None) -> str:
    """`7s`, `2m05s`, `1h02m`; `?` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _count(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1_000_000:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    return f"{n:,}"


def cost_text(p: ProgressSnapshot) -> str | None:
    if p.cost_usd is None:
        return None
    return f"~${p.cost_usd:.4f}" if p.cost_usd < 1 else f"~${p.cost_usd:,.2f}"


def rate_text(p: ProgressSnapshot) -> str:
    return f"{p.rate:.1f} items/s" if p.rate is not None else "- items/s"


def figures_line(p: ProgressSnapshot) -> str:
    """Every figure on one line: what plain mode prints, and the live bar's text."""
    parts = [f"{p.done + p.failed:,}/{p.total:,} ({p.percent:.1f}%)", f"{p.done:,} done", f"{p.failed:,} failed"]
    if p.elapsed is not None:  # a run is going on (not so for `agent status` of a finished thread)
        parts += [rate_text(p), f"ETA {duration(p.eta)}", f"elapsed {duration(p.elapsed)}"]
    parts.append(f"tokens {_count(p.input_tokens)} in, {_count(p.output_tokens)} out")
    if cost := cost_text(p):
        parts.append(cost)
    return ", ".join(parts)


def snapshot_from(data: dict[str, Any]) -> ProgressSnapshot:
    """A snapshot back from its `as_dict()` (what `agent status` returns)."""
    fields = ProgressSnapshot.__dataclass_fields__
    return ProgressSnapshot(**{k: v for k, v in data.items() if k in fields})


class ProgressDisplay:
    """An `on_event` handler for a run, rendering in one of MODES. Use as a context manager,
    so a live bar is closed (and left on screen) before the summary is printed."""

    def __init__(self, mode: str, stream: TextIO | None = None, thread: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.stream = stream or sys.stderr
        self.thread = thread
        """The thread shown, named in the commands a message suggests."""
        self.every = _every(mode)
        self._last_line = 0.0
        self._latest: ProgressSnapshot | None = None
        self._latest_status: str | None = None
        self._shown: ProgressSnapshot | None = None
        self._failures = 0
        self._live = None
        self._console = None

    # -- the run's events ---------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind in ("warning", "stopping", "notice"):
            self._message(kind, event.message)
        elif self.mode == "quiet":
            return
        elif kind == "progress" and event.progress is not None:
            self.show(event.progress)
        elif kind == "node":
            self._node(event)
        elif kind == "item" and event.item and event.item.get("status") == "failed":
            self._failed_item(event.item)

    def show(self, progress: ProgressSnapshot, status: str | None = None) -> None:
        """Render figures: redraw the bar, or print a line if it is time for one."""
        self._latest, self._latest_status = progress, status
        if self.mode == "live":
            self._bar(progress, status)
        elif self.mode in ("plain", "json"):
            now = time.monotonic()
            final = progress.remaining == 0 or (status is not None and status != "running")
            if now - self._last_line < self.every and not final and self._last_line:
                return
            self._last_line = now
            self._line(progress, status)

    def _line(self, progress: ProgressSnapshot, status: str | None) -> None:
        self._shown = progress
        if self.mode == "plain":
            self._write(("" if status is None else f"{status}: ") + "progress: " + figures_line(progress))
        else:
            self._json({"event": "progress", **({"status": status} if status else {}), **progress.as_dict()})

    def close(self) -> None:
        """Leave the last figures on screen: stop the bar, or print the line not yet printed."""
        if self.mode in ("plain", "json") and self._latest is not None and self._shown is not self._latest:
            self._line(self._latest, self._latest_status)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> "ProgressDisplay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rendering ------------------------------------------------------------------------------

    def _node(self, event: Any) -> None:
        if self.mode == "json":
            self._json({"event": "node", "step": event.step, "node": event.node, "seconds": event.seconds, "error": event.error})
            return
        took = f"{event.seconds:.2f}s" if event.seconds is not None else ""
        line = f"step {event.step:>4}  {event.node:<24} {took:>8}"
        self._write(line + (f"  error: {event.error}" if event.error else ""))

    def _failed_item(self, item: dict[str, Any]) -> None:
        self._failures += 1
        if self.mode == "json":
            self._json({"event": "item_failed", "index": item["queue_item"], "error": item.get("error")})
        elif self._failures <= SHOWN_FAILURES:
            self._write(f"item {item['queue_item']} failed: {item.get('error')}")
            if self._failures == SHOWN_FAILURES:
                listing = f"agent results --thread {self.thread} --status failed" if self.thread else "agent results"
                self._write(f"further failures are counted, not shown; {listing} lists them all")

    def _message(self, kind: str, message: str | None) -> None:
        if self.mode == "json":
            self._json({"event": kind, "message": message})
        elif kind == "notice":
            if self.mode != "quiet":
                self._write(str(message))
        else:
            self._write(f"{kind.capitalize()}: {message}")

    def _bar(self, progress: ProgressSnapshot, status: str | None) -> None:
        from rich.console import Console
        from rich.live import Live

        if self._live is None:
            self._console = Console(file=self.stream, stderr=self.stream is sys.stderr)
            self._live = Live(console=self._console, refresh_per_second=4, transient=False, redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._live.update(BarLine(progress, status), refresh=False)

    def _write(self, line: str) -> None:
        line = printable(line)
        if self._live is not None and self._console is not None:
            self._console.print(line, markup=False, highlight=False)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _json(self, data: dict[str, Any]) -> None:
        self.stream.write(printable(json.dumps(data, ensure_ascii=False, default=str)) + "\n")
        self.stream.flush()


BAR_WIDTH = 30
"""The bar's width when the line has room; it narrows to MIN_BAR_WIDTH, then goes."""
MIN_BAR_WIDTH = 10
_DROPPED_FIRST = ("cost", "elapsed", "tokens", "rate", "status", "eta", "done")
"""The live line's parts that give way on a narrow terminal, first to go first; the count, the
percentage and the failures always stay."""


class BarLine:
    """The live bar and its figures as one line, fitted to the console's width each time it is
    drawn (a terminal resized mid-run included): a line that wrapped would leave its first half
    behind on every redraw."""

    def __init__(self, progress: ProgressSnapshot, status: str | None) -> None:
        self.progress, self.status = progress, status

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield bar_line(self.progress, self.status, options.max_width)


def bar_parts(p: ProgressSnapshot, status: str | None) -> list[tuple[str, str, str]]:
    """(name, text, style) of each part of the live line, in the order shown."""
    parts = [("status", f"{status} ", "bold")] if status else []
    parts += [("count", f"{p.done + p.failed:,}/{p.total:,} ", "bold"), ("percent", f"{p.percent:5.1f}%", "")]
    parts += [("done", f"  {p.done:,} done", "green"), ("failed", f"  {p.failed:,} failed", "red" if p.failed else "dim")]
    if p.elapsed is not None:
        parts += [("rate", f"  {rate_text(p)}", ""), ("eta", f"  ETA {duration(p.eta)}", ""), ("elapsed", f"  elapsed {duration(p.elapsed)}", "")]
    parts.append(("tokens", f"  tokens {_count(p.input_tokens)} in, {_count(p.output_tokens)} out", ""))
    if cost := cost_text(p):
        parts.append(("cost", f"  {cost}", ""))
    return parts


def bar_line(p: ProgressSnapshot, status: str | None, width: int) -> Any:
    """The live line at most `width - 1` characters wide (a terminal may wrap a line that fills
    its last column): the parts that fit, after a bar of MIN_BAR_WIDTH to BAR_WIDTH, or alone."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    room = max(width - 1, 1)
    parts = bar_parts(p, status)
    for name in _DROPPED_FIRST:
        if sum(len(text) for _, text, _ in parts) + MIN_BAR_WIDTH + 1 <= room:
            break
        parts = [part for part in parts if part[0] != name]
    text = Text(no_wrap=True, overflow="ellipsis")
    for _, part, style in parts:
        text.append(part, style=style)
    bar_width = min(BAR_WIDTH, room - text.cell_len - 1)
    if bar_width < MIN_BAR_WIDTH:
        text.truncate(room, overflow="ellipsis")
        return text
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=bar_width, no_wrap=True)
    grid.add_column(no_wrap=True, overflow="ellipsis")
    grid.add_row(ProgressBar(total=max(p.total, 1), completed=p.done + p.failed, width=bar_width), text)
    return grid


def watch(fetch: Callable[[], dict[str, Any]], display: ProgressDisplay, interval: float, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """`agent status --watch`: show a thread's figures every `interval` seconds until it is no
    longer running (or Ctrl-C); return the last status read."""
    display.every = 0.0  # a line for every read
    info = fetch()
    try:
        while True:
            progress = info.get("progress")
            if display.mode == "json":
                display._json({"event": "status", **info})
            elif progress:
                display.show(snapshot_from(progress), status=info["status"])
            elif display.mode != "quiet":
                display._write(f"{info['status']}: step {info['steps']}")
            if info["status"] != "running":
                return info
            sleep(interval)
            info = fetch()
    except KeyboardInterrupt:
        return info
    finally:
        display.close()
