"""The demo's closing results table, from evaluation cells (no pipeline run)."""

from __future__ import annotations

from distilray.demo import format_results, headline


def _cell(mode, form="short", snr=None, wer=0.2, latency=1.0, same=None):
    return {
        "mode": mode,
        "form": form,
        "snr_db": snr,
        "wer": wer,
        "latency_vs_teacher": latency,
        "rtfx": 4.0,
        "identical_to_teacher": same,
    }


def test_headline_orders_clean_rows_and_adds_the_untrained_baseline():
    cells = [
        _cell("teacher", same=1.0),
        _cell("student", wer=0.3, latency=0.6, same=0.25),
        _cell("speculative", latency=1.3, same=1.0),
        _cell("teacher", snr=10.0, wer=0.4),
        _cell("teacher", form="chunked", same=1.0),
    ]
    baseline = [_cell("student", wer=1.2, latency=None)]
    rows = headline(cells, baseline)
    assert [(r["mode"], r["form"]) for r in rows] == [
        ("teacher", "short"),
        ("student", "short"),
        ("speculative", "short"),
        ("student (untrained init)", "short"),
        ("teacher", "chunked"),
    ]
    noisy = [c for c in cells if c["snr_db"] is not None]
    served = {
        "url": "http://127.0.0.1:8765",
        "file": "runs/demo/synth-test/clip.wav",
        "latency_s": 0.5,
        "transcript": "hello",
        "wer": 0.0,
    }
    table = format_results(rows, noisy, served)
    assert "| speculative | short | 20.0 | 1.3 | 4.0 | 100% |" in table
    assert "| student (untrained init) | short | 120.0 | – | 4.0 | – |" in table
    assert "teacher      SNR  10.0 dB: 40.0" in table
    assert "transcribed clip.wav in 0.50 s: 'hello'" in table
