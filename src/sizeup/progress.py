"""Progress of long work, one library for every stage (training steps, WSD branches, coordinate
checks, sweeps): a rich bar with an ETA on a terminal; off a terminal (a CI log, ``nohup``, a
file) one plain line every ``every_s`` seconds and at the end, with done/total and the ETA, so
the log shows the work moving instead of staying empty.

    with Progress("sweep", total=56, done=0) as bar:
        bar.advance(1, info="done 3 diverged 0")
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


def _eta(elapsed: float, done: int, total: int) -> str:
    if done <= 0 or total <= done:
        return "-"
    return _duration(elapsed / done * (total - done))


def _duration(s: float) -> str:
    s = int(round(s))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Progress:
    """A progress display for ``total`` units of work, ``done`` of them already finished.

    ``enabled=False`` shows nothing; ``stream`` defaults to stderr; on a terminal a rich bar,
    elsewhere plain lines at most every ``every_s`` seconds (and one at the end).
    """

    def __init__(
        self,
        label: str,
        total: int,
        done: int = 0,
        *,
        enabled: bool = True,
        stream: IO[str] | None = None,
        every_s: float = 30.0,
        transient: bool = False,
    ) -> None:
        self.label, self.total, self.done = label, total, done
        self.enabled, self.every_s, self.transient = enabled, every_s, transient
        self.stream = stream if stream is not None else sys.stderr
        self.info = ""
        self._start = self._last = time.monotonic()
        self._first_done = done
        self._bar: Any = None

    # --- context -----------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        if self.stream.isatty():
            self._open_bar()
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif exc[0] is None:
            self._line(final=True)

    def _open_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn(f"[bold]{self.label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=self.stream),
            transient=self.transient,
        )
        self._bar.__enter__()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, info="")

    # --- updates -----------------------------------------------------------------------------
    def advance(self, n: int = 1, info: str | None = None) -> None:
        """Count ``n`` more units done; ``info`` replaces the short status text."""
        self.done += n
        if info is not None:
            self.info = info
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=n, info=self.info)
        elif time.monotonic() - self._last >= self.every_s:
            self._line()

    def _line(self, final: bool = False) -> None:
        now = time.monotonic()
        self._last = now
        elapsed = now - self._start
        rate_done = self.done - self._first_done
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [
            f"{self.label}: {self.done}/{self.total} ({pct:.0f}%)",
            f"elapsed {_duration(elapsed)}",
        ]
        if not final:
            parts.append(f"eta {_eta(elapsed, rate_done, self.total - self._first_done)}")
        if self.info:
            parts.append(self.info)
        print(", ".join(parts), file=self.stream, flush=True)
