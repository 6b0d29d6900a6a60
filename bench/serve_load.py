"""Bounded load test of the transcription endpoint on 127.0.0.1.

Starts the endpoint on the embedded Ray (or targets ``--url``, loopback only),
sends ``--requests`` uploads of synthetic speech with ``--concurrency`` in
flight, checks every answer equals the teacher's own greedy transcript of that
clip, and reports throughput and latency percentiles (also as JSON). Stops by
itself: at most ``--requests`` requests and ``--max-seconds`` of sending.

    python bench/serve_load.py --requests 48 --concurrency 8
    python bench/serve_load.py --cut-student --out bench/results/serve_load_speculative.json
    python bench/serve_load.py --url http://127.0.0.1:8000 --requests 100  # a running server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

logger = logging.getLogger("serve_load")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Clip:
    name: str
    wav: bytes  # what is uploaded
    duration_s: float
    expected: str  # the teacher's greedy transcript, computed here


@dataclass
class Outcome:
    clip: str
    status: int | None  # None: no answer (connection error or cut off by the deadline)
    latency_s: float
    correct: bool
    batch_size: int | None
    error: str | None = None
    acceptance_rate: float | None = None  # speculative decoding, from the response header


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_clips(count: int, teacher: str, workdir: Path) -> list[Clip]:
    """Synthetic speech clips and the teacher's greedy transcript of each."""
    from distilray.audio import decode_audio, encode_wav
    from distilray.data.synth import synthesize_dataset
    from distilray.inference.engine import Transcriber

    manifest = synthesize_dataset(workdir, count, seed=0)
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
    audios = [decode_audio(_audio_path(Path(manifest).parent, row["audio"])) for row in rows]
    results = Transcriber.load(teacher).transcribe(audios)  # teacher alone, greedy
    return [
        Clip(row["id"], encode_wav(audio), len(audio) / 16000, result.text)
        for row, audio, result in zip(rows, audios, results, strict=True)
    ]


def _audio_path(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


async def one_request(client, clip: Clip) -> Outcome:
    start = time.perf_counter()
    try:
        resp = await client.post(
            "/v1/audio/transcriptions",
            files={"file": (f"{clip.name}.wav", clip.wav, "audio/wav")},
            data={"response_format": "json"},
        )
    except Exception as exc:  # a lost request is a result to report, not a crash
        return Outcome(clip.name, None, time.perf_counter() - start, False, None, repr(exc))
    latency = time.perf_counter() - start
    if resp.status_code != 200:
        return Outcome(clip.name, resp.status_code, latency, False, None, resp.text[:200])
    text = resp.json().get("text", "")
    batch = resp.headers.get("x-distilray-batch-size")
    accepted = resp.headers.get("x-distilray-acceptance-rate")
    error = None if text == clip.expected else f"got {text!r}, expected {clip.expected!r}"
    return Outcome(
        clip.name,
        200,
        latency,
        error is None,
        int(batch) if batch else None,
        error,
        float(accepted) if accepted else None,
    )


async def run_load(
    url: str, clips: list[Clip], requests: int, concurrency: int, max_seconds: float
):
    """Send ``requests`` uploads, ``concurrency`` at a time, until done or the deadline."""
    import httpx

    queue: asyncio.Queue[Clip] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(clips[i % len(clips)])
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + max_seconds

    async def worker(client) -> None:
        while not queue.empty() and time.perf_counter() < deadline:
            clip = queue.get_nowait()
            remaining = max(0.1, deadline - time.perf_counter())
            try:
                outcomes.append(await asyncio.wait_for(one_request(client, clip), remaining))
            except TimeoutError:
                outcomes.append(Outcome(clip.name, None, remaining, False, None, "deadline"))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=max_seconds, limits=limits) as client:
        await one_request(client, clips[0])  # warm-up, not counted
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return outcomes, wall, requests - len(outcomes)


def summarize(
    outcomes: list[Outcome], wall: float, not_sent: int, clips: list[Clip], config: dict
) -> dict:
    ok = [o for o in outcomes if o.status == 200]
    durations = {c.name: c.duration_s for c in clips}
    latencies = np.array([o.latency_s for o in ok]) if ok else np.zeros(0)
    batches = [o.batch_size for o in ok if o.batch_size]
    accepted = [o.acceptance_rate for o in ok if o.acceptance_rate is not None]

    def pct(q: float) -> float | None:
        return round(float(np.percentile(latencies, q)), 4) if latencies.size else None

    return {
        "config": config,
        "requests": len(outcomes) + not_sent,
        "answered_200": len(ok),
        "correct": sum(o.correct for o in outcomes),
        "wrong_text": sum(o.status == 200 and not o.correct for o in outcomes),
        "http_errors": sum(o.status not in (None, 200) for o in outcomes),
        "lost": sum(o.status is None for o in outcomes),
        "not_sent": not_sent,
        "wall_s": round(wall, 3),
        "throughput_req_s": round(len(ok) / wall, 3) if wall else None,
        "throughput_audio_s_per_s": round(sum(durations[o.clip] for o in ok) / wall, 3)
        if wall
        else None,
        "latency_s": {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": pct(100)},
        "mean_batch_size": round(float(np.mean(batches)), 2) if batches else None,
        "mean_acceptance_rate": round(float(np.mean(accepted)), 3) if accepted else None,
        "failures": [asdict(o) for o in outcomes if not o.correct][:10],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Bounded load test of the transcription endpoint.")
    p.add_argument(
        "--url", help="target a running endpoint (loopback only) instead of starting one"
    )
    p.add_argument(
        "--teacher", default="tiny.en", help="teacher served (and used for expected text)"
    )
    p.add_argument("--assistant", help="student for speculative decoding (started endpoint only)")
    p.add_argument(
        "--cut-student",
        action="store_true",
        help="use a 2-layer student cut from the teacher (not distilled) as the assistant",
    )
    p.add_argument("--requests", type=int, default=48, help="requests to send (bounded)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--clips", type=int, default=8, help="distinct synthetic clips")
    p.add_argument("--max-seconds", type=float, default=300.0, help="stop sending after this long")
    p.add_argument(
        "--max-batch-size", type=int, default=8, help="server batch size (started endpoint)"
    )
    p.add_argument("--cpus", type=float, default=2.0, help="model replica CPUs = torch threads")
    p.add_argument("--out", default="bench/results/serve_load.json", help="JSON results file")
    args = p.parse_args(argv)
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        p.error("--url must point at 127.0.0.1 / localhost: this load test stays on this machine")
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 256:
        p.error("--requests must be 1..10000 and --concurrency 1..256")
    return args


def cut_student(teacher: str, out: Path) -> str:
    """A 2-layer student initialised from the teacher (first and last decoder layers)."""
    from distilray.student import StudentInitConfig, init_student

    init_student(StudentInitConfig(teacher=teacher, decoder_layers=2, out=str(out)))
    return str(out)


def start_endpoint(args: argparse.Namespace) -> str:
    from distilray.serving.config import ServeArgs
    from distilray.serving.local import start_local

    serve_args = ServeArgs(
        teacher=args.teacher,
        assistant=args.assistant,
        torch_threads=max(1, round(args.cpus)),
        api_key_env=None,
        batching={"max_batch_size": args.max_batch_size, "batch_wait_timeout_s": 0.05},
    )
    return start_local(serve_args, "127.0.0.1", free_port(), model_cpus=args.cpus)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(args.clips, args.teacher, Path(tmp) / "clips")
        if args.cut_student and not args.assistant:
            args.assistant = cut_student(args.teacher, Path(tmp) / "student")
        url = args.url or start_endpoint(args)
        try:
            outcomes, wall, not_sent = asyncio.run(
                run_load(url, clips, args.requests, args.concurrency, args.max_seconds)
            )
        finally:
            if not args.url:
                from ray import serve

                serve.shutdown()
    config = {k: v for k, v in vars(args).items() if k != "out"}
    report = summarize(outcomes, wall, not_sent, clips, config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps({k: v for k, v in report.items() if k not in ("config", "failures")}, indent=2)
    )
    bad = report["wrong_text"] + report["http_errors"] + report["lost"] + report["not_sent"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
