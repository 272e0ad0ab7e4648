"""Progress reports at a steady pace: bytes, percentage and rate, at most every ``interval`` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """Call with the bytes done so far; logs through ``emit`` every ``interval`` seconds and at the end."""

    def __init__(
        self,
        what: str,
        total: int,
        emit: Callable[[str], None],
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self.total = max(total, 0)
        self.emit = emit
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.done = 0
        self.reports = 0

    def message(self, done: int, extra: str = "") -> str:
        elapsed = max(self.clock() - self.start, 1e-9)
        pct = f" ({100.0 * done / self.total:.0f}%)" if self.total else ""
        rate = done / elapsed / 1e6
        return f"{self.what}: {human(done)} of {human(self.total)}{pct}, {rate:.1f} MB/s{extra}"

    def __call__(self, done: int, extra: str = "") -> None:
        self.done = done
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.reports += 1
            self.emit(self.message(done, extra))

    def finish(self, extra: str = "") -> None:
        self.reports += 1
        self.emit(self.message(self.done, extra) + " - done")
