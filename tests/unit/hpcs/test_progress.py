from include.hpcs.progress import Progress, human


def test_steady_pace():
    now = [0.0]
    lines = []
    p = Progress("ship", 1000, lines.append, interval=5, clock=lambda: now[0])
    for i in range(1, 21):
        now[0] = i
        p(i * 50)
    p.finish()
    assert len(lines) == 5  # t=5, 10, 15, 20 and the final line
    assert "(25%)" in lines[0] and lines[-1].endswith("done")
    assert "MB/s" in lines[0]


def test_human():
    assert human(512) == "512 B"
    assert human(1536) == "1.5 KiB"
    assert human(3 * 1024**3) == "3.0 GiB"
