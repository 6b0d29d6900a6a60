"""The pure helpers of bench/serve_load.py: percentiles, Serve's overhead, the table."""

from __future__ import annotations

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def serve_load():
    with bench_module("serve_load.py") as module:
        yield module


def row(variant, path, conc, p50, p95, **extra):
    return {
        "variant": variant,
        "path": path,
        "concurrency": conc,
        "requests": 4,
        "correct": 4,
        "latency_s": {"p50": p50, "p95": p95},
        "throughput_audio_s_per_s": 3.0,
        "throughput_req_s": 1.0,
        **extra,
    }


def test_percentiles(serve_load):
    lat = serve_load.percentiles([0.1 * i for i in range(1, 101)])  # 0.1 .. 10.0
    assert lat["p50"] == pytest.approx(5.05)
    assert lat["p95"] == pytest.approx(9.505)
    assert lat["max"] == pytest.approx(10.0)
    assert serve_load.percentiles([]) == {"p50": None, "p95": None, "p99": None, "max": None}


def test_overhead_pct(serve_load):
    assert serve_load.overhead_pct(1.1, 1.0) == 10.0
    assert serve_load.overhead_pct(0.9, 1.0) == -10.0  # batching can make Serve faster
    assert serve_load.overhead_pct(None, 1.0) is None
    assert serve_load.overhead_pct(1.0, None) is None


def test_overheads_pair_serve_with_its_in_process_twin(serve_load):
    rows = serve_load.with_overheads(
        [
            row("plain", "in-process", 1, 1.0, 2.0),
            row("plain", "serve", 1, 1.05, 2.5),
            row("plain", "in-process", 4, 2.0, 4.0),
            row("plain", "serve", 4, 3.0, 4.0),
            row("speculative", "serve", 1, 1.0, 1.0),  # no twin: no overhead
        ]
    )
    assert (rows[1]["overhead_p50_pct"], rows[1]["overhead_p95_pct"]) == (5.0, 25.0)
    assert (rows[3]["overhead_p50_pct"], rows[3]["overhead_p95_pct"]) == (50.0, 0.0)
    assert "overhead_p50_pct" not in rows[0] and "overhead_p50_pct" not in rows[4]


def test_table_has_one_line_per_row_with_overheads(serve_load):
    rows = serve_load.with_overheads(
        [row("plain", "in-process", 1, 1.0, 2.0), row("plain", "serve", 1, 1.05, None)]
    )
    lines = serve_load.format_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| variant | path |")
    assert all(line.count("|") == 11 for line in lines)
    assert lines[2] == "| plain | in-process | 1 | 4/4 | 1.000 | 2.000 | 3.00 | 1.00 | - | - |"
    assert lines[3] == "| plain | serve | 1 | 4/4 | 1.050 | - | 3.00 | 1.00 | +5.0% | - |"
