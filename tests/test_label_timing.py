"""Labelling's start-up figure apart from its steady-state rate."""

from __future__ import annotations

from distilray.labelling.progress import ProgressCounter, startup_and_steady


def test_startup_and_steady_rate_from_the_counters_batches(monkeypatch):
    import distilray.labelling.progress as progress

    clock = iter([104.0, 106.0, 109.0])
    monkeypatch.setattr(progress.time, "time", lambda: next(clock))
    counter = ProgressCounter()
    for audio_s in (20.0, 30.0, 30.0):  # batches labelled at 104, 106 and 109 s
        counter.add(rows=4, inputs=4, audio_s=audio_s, errors=0)
    figures = startup_and_steady(counter.timings(), started_at=100.0, audio_s=80.0)
    # 4 s until the first batch; then 60 s of audio in the 5 s after it
    assert figures == {"startup_s": 4.0, "steady_audio_s_per_s": 12.0}
    assert startup_and_steady({}, 100.0, 0.0) == {"startup_s": None, "steady_audio_s_per_s": None}
