from __future__ import annotations

import threading

import pytest

from include.common.progress import ProgressReporter, human_bytes, human_duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_steady_pace_bytes_rate_eta():
    clock, lines, snaps = Clock(), [], []
    p = ProgressReporter("ship", bytes_total=100_000_000, interval=5, emit=lines.append, on_report=snaps.append,
                         clock=clock)
    for i in range(1, 21):
        clock.now = i
        p(i * 1_000_000)  # cumulative, every second
    assert len(lines) == 4  # at t=5, 10, 15, 20
    assert lines[0] == "ship: 4.8 MiB of 95.4 MiB (5%), 1.0 MB/s, about 1m35s left"
    assert snaps[-1].eta == pytest.approx(80.0) and snaps[-1].rate == pytest.approx(1e6)
    final = p.finish()
    assert final.final and lines[-1].endswith("done in 20s") and len(lines) == 5
    p.finish()  # once only
    assert len(lines) == 5


def test_files_counts_and_no_total():
    clock, lines = Clock(), []
    p = ProgressReporter("transfer", files_total=3, interval=0, emit=lines.append, clock=clock)
    clock.now = 2
    p.add(nbytes=2048, files=1)
    p.count("skipped")
    assert lines[0] == "transfer: 2.0 KiB, 1 of 3 files (33%), 0.0 MB/s"
    assert "skipped 1" in lines[1]
    assert p.snapshot().eta is None  # no byte total: no ETA


def test_tick_reports_a_stall():
    clock, lines = Clock(), []
    p = ProgressReporter("x", interval=10, emit=lines.append, clock=clock)
    p.tick()
    assert lines == []
    clock.now = 10
    p.tick()
    assert len(lines) == 1


def test_threads_add_exactly():
    p = ProgressReporter("x", interval=0.0, on_report=lambda s: None)

    def work():
        for _ in range(10_000):
            p.add(nbytes=3, files=1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = p.finish()
    assert snap.bytes_done == 120_000 and snap.files_done == 40_000
    assert snap.as_dict()["files_done"] == 40_000


def test_humans():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_duration(42) == "42s" and human_duration(185) == "3m05s" and human_duration(7620) == "2h07m"


def test_bad_interval():
    with pytest.raises(ValueError):
        ProgressReporter("x", interval=-1)


def test_reports_from_many_threads_arrive_in_order():
    """A status channel never goes backwards: a report overtaken by a newer one is dropped."""
    import threading

    from include.common.progress import ProgressReporter

    seen: list[int] = []
    reporter = ProgressReporter("t", files_total=8 * 500, interval=0, emit=None, on_report=lambda s: seen.append(s.files_done))

    def work():
        for _ in range(500):
            reporter.add(files=1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reporter.finish()
    assert seen == sorted(seen) and seen[-1] == 8 * 500
