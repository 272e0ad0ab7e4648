"""One progress reporter for long work: files and bytes done, rate and ETA, at a steady pace.

Callers update it as often as they like (every chunk, from several threads); it reports at most
once every ``interval`` seconds of the clock, plus once at ``finish()``. A report is a line for the
task log (``emit``) and, where the pipeline has a status channel (the stager job status), a
:class:`Snapshot` for ``on_report``::

    progress = ProgressReporter("file 42 archived", bytes_total=size, emit=log.info)
    c4gh.split(src, out, progress=progress)      # called with the bytes done so far
    progress.finish()

    progress = ProgressReporter("transfer", files_total=n, bytes_total=total, on_report=save_status)
    progress.add(nbytes=len(chunk))               # from any thread: increments
    progress.add(files=1); progress.count("skipped")
    progress.tick()                               # a report if one is due, even without news

Both ``emit`` and ``on_report`` run in the thread whose update made the report due, outside the
reporter's counting lock, one report at a time and in the order the reports were taken (a report
overtaken by a newer one is dropped); what they raise reaches that caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ProgressReporter", "Snapshot", "human_bytes", "human_duration"]


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Snapshot:
    """The state of the work at one report.

    :param rate: bytes per second since the start
    :param eta: seconds left at that rate (``None`` without a byte total or before any byte)
    :param counts: the caller's own counters (``failed``, ``skipped``...)
    """

    what: str
    bytes_done: int
    bytes_total: int | None
    files_done: int
    files_total: int | None
    elapsed: float
    rate: float
    eta: float | None
    counts: dict[str, int] = field(default_factory=dict)
    final: bool = False

    @property
    def percent(self) -> float | None:
        if self.bytes_total:
            return 100.0 * self.bytes_done / self.bytes_total
        if self.files_total:
            return 100.0 * self.files_done / self.files_total
        return None

    def line(self) -> str:
        parts = [human_bytes(self.bytes_done) + (f" of {human_bytes(self.bytes_total)}" if self.bytes_total else "")]
        if self.files_total is not None or self.files_done:
            parts.append(f"{self.files_done}" + (f" of {self.files_total}" if self.files_total is not None else "")
                         + " files")
        parts += [f"{name} {n}" for name, n in sorted(self.counts.items())]
        pct = self.percent
        head = f"{self.what}: " + ", ".join(parts) + (f" ({pct:.0f}%)" if pct is not None else "")
        tail = f", {self.rate / 1e6:.1f} MB/s"
        if self.final:
            return head + tail + f" - done in {human_duration(self.elapsed)}"
        if self.eta is not None:
            tail += f", about {human_duration(self.eta)} left"
        return head + tail

    def as_dict(self) -> dict:
        return {
            "what": self.what,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
            "eta": None if self.eta is None else round(self.eta, 1),
            "counts": dict(self.counts),
            "final": self.final,
        }


class ProgressReporter:
    """Counts files and bytes and reports them at most every ``interval`` seconds; thread-safe.

    :param what: what is being done, the head of each line ("file 42 archived")
    :param bytes_total: the bytes expected, when known (for the percentage and the ETA)
    :param files_total: the files expected, when known
    :param interval: seconds between two reports
    :param emit: receives each report's line (the task log); ``None``: no line
    :param on_report: receives each report's :class:`Snapshot` (a status channel)
    :param clock: monotonic seconds (tests pass their own)
    """

    def __init__(
        self,
        what: str,
        *,
        bytes_total: int | None = None,
        files_total: int | None = None,
        interval: float = 10.0,
        emit: Callable[[str], None] | None = None,
        on_report: Callable[[Snapshot], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.what = what
        self.bytes_total = bytes_total
        self.files_total = files_total
        self.interval = interval
        self.emit = emit
        self.on_report = on_report
        self.clock = clock
        self.started = clock()
        self.bytes_done = 0
        self.files_done = 0
        self.counts: dict[str, int] = {}
        self.reports = 0
        self._last = self.started
        self._finished = False
        self._lock = threading.Lock()
        # reports are delivered in the order they were taken: a thread whose snapshot is older than
        # one already delivered drops it (a status channel never goes backwards)
        self._send_lock = threading.RLock()
        self._sent = 0

    # -- updates -----------------------------------------------------------------------------
    def __call__(self, bytes_done: int) -> None:
        """The bytes done so far (the callback form the streaming functions take)."""
        self.update(bytes_done=bytes_done)

    def update(
        self,
        *,
        bytes_done: int | None = None,
        files_done: int | None = None,
        bytes_total: int | None = None,
        files_total: int | None = None,
    ) -> None:
        """Set absolute values (any of them); report if one is due."""
        with self._lock:
            if bytes_done is not None:
                self.bytes_done = bytes_done
            if files_done is not None:
                self.files_done = files_done
            if bytes_total is not None:
                self.bytes_total = bytes_total
            if files_total is not None:
                self.files_total = files_total
            snap = self._due()
        self._send(snap)

    def add(self, nbytes: int = 0, files: int = 0) -> None:
        """Add to the bytes and files done (from any thread); report if one is due."""
        with self._lock:
            self.bytes_done += nbytes
            self.files_done += files
            snap = self._due()
        self._send(snap)

    def count(self, name: str, n: int = 1) -> None:
        """Add to one of the caller's own counters (``failed``, ``skipped``...)."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n
            snap = self._due()
        self._send(snap)

    def tick(self) -> None:
        """Report if one is due, even if nothing moved (so that a stall shows in the log)."""
        with self._lock:
            snap = self._due()
        self._send(snap)

    def report(self) -> Snapshot:
        """Report now, whatever the pace."""
        with self._lock:
            taken = self._take(final=False)
        self._send(taken)
        return taken[1]

    def finish(self) -> Snapshot:
        """The last report ("done in ..."); later calls return the same snapshot without reporting."""
        with self._lock:
            if self._finished:
                return self.snapshot(final=True)
            self._finished = True
            taken = self._take(final=True)
        self._send(taken)
        return taken[1]

    # -- reading -----------------------------------------------------------------------------
    def snapshot(self, final: bool = False) -> Snapshot:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.bytes_done / elapsed
        eta = None
        if self.bytes_total and rate > 0:
            eta = max(self.bytes_total - self.bytes_done, 0) / rate
        return Snapshot(
            what=self.what,
            bytes_done=self.bytes_done,
            bytes_total=self.bytes_total,
            files_done=self.files_done,
            files_total=self.files_total,
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            counts=dict(self.counts),
            final=final,
        )

    # -- inside ------------------------------------------------------------------------------
    def _due(self) -> tuple[int, Snapshot] | None:
        if self._finished or self.clock() - self._last < self.interval:
            return None
        return self._take(final=False)

    def _take(self, final: bool) -> tuple[int, Snapshot]:
        self._last = self.clock()
        self.reports += 1
        return self.reports, self.snapshot(final=final)

    def _send(self, taken: tuple[int, Snapshot] | None) -> None:
        if taken is None:
            return
        seq, snap = taken
        with self._send_lock:
            if seq <= self._sent:
                return  # a newer report went out while this thread was on its way
            self._sent = seq
            if self.emit is not None:
                self.emit(snap.line())
            if self.on_report is not None:
                self.on_report(snap)
