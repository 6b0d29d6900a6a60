"""Serve's overhead: the same clips through the same Transcriber, in-process and over HTTP.

For each deployment variant (``plain``: teacher alone; ``plain-ct2``, with ``--ct2``:
the teacher alone on the CTranslate2 engine; ``speculative``: teacher with a student
assistant) and each ``--concurrency``, the same request sequence is timed

* in-process: ``--concurrency`` client threads hand decoded audio to one
  :class:`~distilray.inference.engine.Transcriber` (loaded as a replica loads it)
  behind the replica's batching policy: one decode at a time, each taking up to
  ``max_batch_size`` requests, waiting at most ``--batch-wait`` for the batch to fill
  (with one client thread: one request after the other, each paying that wait);
* via Serve: the same requests uploaded as WAV to a local endpoint on 127.0.0.1
  started by this script (HTTP, ingress, audio decoding, ``@serve.batch``).

Every answer must equal the teacher's own greedy transcript of the clip. The table
gives p50/p95 latency, throughput (audio-s/s, requests/s) and Serve's overhead over
in-process at p50 and p95 (also written as JSON). Stops by itself: at most
``--requests`` requests and ``--max-seconds`` of sending per measurement.

    python bench/serve_load.py --teacher tiny.en --assistant cut --clips 8 --concurrency 1 4
    python bench/serve_load.py --assistant path/to/student --out bench/results/serve_load.json
    python bench/serve_load.py --url http://127.0.0.1:8000 --requests 100  # a running server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import queue
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

logger = logging.getLogger("serve_load")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
OVERHEAD_TARGET_P50 = 10.0  # per cent: Serve may add at most this much at p50


@dataclass(frozen=True)
class Clip:
    name: str
    wav: bytes  # what is uploaded
    audio: np.ndarray  # what the in-process path decodes (the same samples)
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
    acceptance_rate: float | None = None  # speculative decoding


# -- pure helpers (unit-tested) ---------------------------------------------------------


def percentiles(latencies: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of ``latencies`` in seconds (None when there are none)."""
    values = np.asarray(latencies, dtype=float)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(values, q)), 4) if values.size else None

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": pct(100)}


def overhead_pct(serve_s: float | None, inprocess_s: float | None) -> float | None:
    """How much longer Serve took than in-process, in per cent (negative: faster)."""
    if serve_s is None or not inprocess_s:
        return None
    return round(100.0 * (serve_s - inprocess_s) / inprocess_s, 1)


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def format_table(rows: list[dict]) -> str:
    """A Markdown table of measurement rows; serve rows carry their overhead."""
    head = (
        "| variant | path | conc. | ok | p50 s | p95 s | audio-s/s | req/s "
        "| overhead p50 | overhead p95 |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lat = r["latency_s"]
        lines.append(
            f"| {r['variant']} | {r['path']} | {r['concurrency']} "
            f"| {r['correct']}/{r['requests']} | {_cell(lat['p50'], '.3f')} "
            f"| {_cell(lat['p95'], '.3f')} | {_cell(r['throughput_audio_s_per_s'], '.2f')} "
            f"| {_cell(r['throughput_req_s'], '.2f')} "
            f"| {_pct(r.get('overhead_p50_pct'))} | {_pct(r.get('overhead_p95_pct'))} |"
        )
    return "\n".join(lines)


def summarize(outcomes: list[Outcome], wall: float, not_sent: int, clips: list[Clip]) -> dict:
    """Counts, throughput and latency percentiles of one measurement."""
    ok = [o for o in outcomes if o.status == 200]
    durations = {c.name: c.duration_s for c in clips}
    batches = [o.batch_size for o in ok if o.batch_size]
    accepted = [o.acceptance_rate for o in ok if o.acceptance_rate is not None]
    return {
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
        "latency_s": percentiles([o.latency_s for o in ok]),
        "mean_batch_size": round(float(np.mean(batches)), 2) if batches else None,
        "mean_acceptance_rate": round(float(np.mean(accepted)), 3) if accepted else None,
        "failures": [asdict(o) for o in outcomes if not o.correct][:10],
    }


def with_overheads(rows: list[dict]) -> list[dict]:
    """Serve rows gain ``overhead_p50_pct``/``overhead_p95_pct`` over their in-process twin."""
    base = {(r["variant"], r["concurrency"]): r for r in rows if r["path"] == "in-process"}
    for r in rows:
        twin = base.get((r["variant"], r["concurrency"]))
        if r["path"] == "serve" and twin is not None:
            for q in ("p50", "p95"):
                r[f"overhead_{q}_pct"] = overhead_pct(r["latency_s"][q], twin["latency_s"][q])
    return rows


# -- clips and models --------------------------------------------------------------------


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
        Clip(row["id"], encode_wav(audio), audio, len(audio) / 16000, result.text)
        for row, audio, result in zip(rows, audios, results, strict=True)
    ]


def _audio_path(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def cut_student(teacher: str, out: Path) -> str:
    """A 2-layer student initialised from the teacher (first and last decoder layers)."""
    from distilray.student import StudentInitConfig, init_student

    init_student(StudentInitConfig(teacher=teacher, decoder_layers=2, out=str(out)))
    return str(out)


def serve_args(args: argparse.Namespace, assistant: str | None, engine: str = "transformers"):
    """The app args both paths use: the in-process Transcriber is loaded from them too."""
    from distilray.serving.config import ServeArgs

    return ServeArgs(
        teacher=args.teacher,
        assistant=assistant,
        engine=engine,
        torch_threads=max(1, round(args.cpus)),
        api_key_env=None,
        batching={"max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait},
        # every answer is checked against the teacher's greedy transcript: no sampling
        fallback={"temperatures": []},
    )


# -- in-process path ---------------------------------------------------------------------


class InProcess:
    """One Transcriber behind a replica's batching policy, without Ray, HTTP or Serve.

    One decode at a time; a batch starts with the first waiting request and takes
    others until it holds ``max_batch_size`` or ``batch_wait_s`` has passed, as
    ``@serve.batch`` does, so both paths decode the same batches.
    """

    def __init__(self, transcriber, options, max_batch_size: int, batch_wait_s: float) -> None:
        self.transcriber, self.options = transcriber, options
        self.max_batch_size, self.batch_wait_s = max_batch_size, batch_wait_s
        self._queue: queue.Queue[tuple[np.ndarray, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="inprocess-decoder", daemon=True)
        self._thread.start()

    def submit(self, audio: np.ndarray) -> Future:
        future: Future = Future()
        self._queue.put((audio, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            jobs = [item]
            until = time.perf_counter() + self.batch_wait_s
            while len(jobs) < self.max_batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, until - time.perf_counter()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                jobs.append(nxt)
            try:
                results = self.transcriber.transcribe(
                    [audio for audio, _ in jobs], long_form="chunked", options=self.options
                )
            except Exception as exc:  # reported per request, as an HTTP error would be
                for _, future in jobs:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(jobs, results, strict=True):
                future.set_result((result, len(jobs)))


def load_inprocess(args) -> InProcess:
    """The Transcriber a replica would load from ``args``, with the options it decodes with."""
    import torch

    from distilray.serving.model import DecodeRequest, decode_options, load_transcriber

    torch.set_num_threads(args.torch_threads)
    transcriber = load_transcriber(args)
    # A json-format request to an English-only teacher: language "en", no timestamps.
    options = decode_options(transcriber, DecodeRequest(language="en"))
    batching = args.batching
    return InProcess(transcriber, options, batching.max_batch_size, batching.batch_wait_timeout_s)


def run_inprocess(
    engine: InProcess, clips: list[Clip], requests: int, concurrency: int, max_seconds: float
):
    """The request sequence through ``engine``, ``concurrency`` client threads at once."""
    deadline = time.perf_counter() + max_seconds

    def one(clip: Clip) -> Outcome | None:
        if time.perf_counter() >= deadline:
            return None  # not sent
        start = time.perf_counter()
        try:
            result, batch = engine.submit(clip.audio).result()
        except Exception as exc:
            return Outcome(clip.name, None, time.perf_counter() - start, False, None, repr(exc))
        latency = time.perf_counter() - start
        error = (
            None
            if result.text == clip.expected
            else (f"got {result.text!r}, expected {clip.expected!r}")
        )
        spec = result.speculative
        return Outcome(
            clip.name,
            200,
            latency,
            error is None,
            batch,
            error,
            spec.acceptance_rate if spec is not None else None,
        )

    one(clips[0])  # warm-up, not counted
    sequence = [clips[i % len(clips)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        done = list(pool.map(one, sequence))
    wall = time.perf_counter() - start
    outcomes = [o for o in done if o is not None]
    return outcomes, wall, requests - len(outcomes)


# -- HTTP path ---------------------------------------------------------------------------


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

    pending: asyncio.Queue[Clip] = asyncio.Queue()
    for i in range(requests):
        pending.put_nowait(clips[i % len(clips)])
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + max_seconds

    async def worker(client) -> None:
        while not pending.empty() and time.perf_counter() < deadline:
            clip = pending.get_nowait()
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


def start_endpoint(args, port: int, cpus: float) -> str:
    from distilray.serving.local import start_local

    return start_local(args, "127.0.0.1", port or free_port(), model_cpus=cpus)


# -- the command -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Serve's latency/throughput overhead over the in-process Transcriber."
    )
    p.add_argument(
        "--url", help="load-test a running endpoint (loopback only); no in-process baseline"
    )
    p.add_argument(
        "--teacher", default="tiny.en", help="teacher served (and used for expected text)"
    )
    p.add_argument(
        "--assistant",
        default="cut",
        help="student for the speculative variant: a model folder/URI, 'cut' (a 2-layer "
        "student initialised from the teacher, not distilled) or 'none' (plain variant only)",
    )
    p.add_argument(
        "--ct2",
        action="store_true",
        help="also the plain variant on the CTranslate2 engine (engine: ctranslate2, float32)",
    )
    p.add_argument("--clips", type=int, default=8, help="distinct synthetic clips")
    p.add_argument(
        "--requests",
        type=int,
        help="requests per measurement, cycling the clips (default: --clips)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 4],
        help="requests in flight (one or more)",
    )
    p.add_argument("--max-seconds", type=float, default=300.0, help="per measurement, at most")
    p.add_argument("--max-batch-size", type=int, default=8, help="server (and in-process) batch")
    p.add_argument(
        "--batch-wait", type=float, default=0.02, help="@serve.batch wait for more requests, s"
    )
    p.add_argument("--cpus", type=float, default=2.0, help="model replica CPUs = torch threads")
    p.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (0: a free one)")
    p.add_argument("--out", default="bench/results/serve_load.json", help="JSON results file")
    args = p.parse_args(argv)
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        p.error("--url must point at 127.0.0.1 / localhost: this load test stays on this machine")
    args.requests = args.requests or args.clips
    if not 1 <= args.clips <= 1000 or not 1 <= args.requests <= 10_000:
        p.error("--clips must be 1..1000 and --requests 1..10000")
    if not all(1 <= c <= 256 for c in args.concurrency):
        p.error("--concurrency must be 1..256")
    return args


def measure(label: dict, clips: list[Clip], outcome) -> dict:
    outcomes, wall, not_sent = outcome
    name = f"{label['variant']}.{label['path']}.c{label['concurrency']}"
    row = {"label": name, **label, **summarize(outcomes, wall, not_sent, clips)}
    logger.info(
        "%s %s c=%d: %d/%d correct, p50 %s s",
        row["variant"],
        row["path"],
        row["concurrency"],
        row["correct"],
        row["requests"],
        row["latency_s"]["p50"],
    )
    return row


def run_variant(
    args, name: str, assistant: str | None, clips: list[Clip], engine: str = "transformers"
) -> list[dict]:
    """In-process then Serve, for every concurrency, of one deployment variant."""
    from ray import serve

    app_args = serve_args(args, assistant, engine)
    engine = load_inprocess(app_args)
    url = start_endpoint(app_args, args.port, args.cpus)
    rows = []
    try:
        for conc in args.concurrency:
            label = {"variant": name, "concurrency": conc}
            rows.append(
                measure(
                    {**label, "path": "in-process"},
                    clips,
                    run_inprocess(engine, clips, args.requests, conc, args.max_seconds),
                )
            )
            rows.append(
                measure(
                    {**label, "path": "serve"},
                    clips,
                    asyncio.run(run_load(url, clips, args.requests, conc, args.max_seconds)),
                )
            )
    finally:
        engine.close()
        serve.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(args.clips, args.teacher, Path(tmp) / "clips")
        if args.url:
            for conc in args.concurrency:
                rows.append(
                    measure(
                        {"variant": "remote", "path": "serve", "concurrency": conc},
                        clips,
                        asyncio.run(
                            run_load(args.url, clips, args.requests, conc, args.max_seconds)
                        ),
                    )
                )
        else:
            assistant = {"none": None, "cut": None}.get(args.assistant.lower(), args.assistant)
            if args.assistant.lower() == "cut":
                assistant = cut_student(args.teacher, Path(tmp) / "student")
            variants = [("plain", None, "transformers")]
            if args.ct2:
                variants.append(("plain-ct2", None, "ctranslate2"))
            if assistant:
                variants.append(("speculative", assistant, "transformers"))
            for name, student, engine in variants:
                rows += run_variant(args, name, student, clips, engine)
    rows = with_overheads(rows)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    audio_s = round(sum(c.duration_s for c in clips), 2)
    report = {"config": config, "clips_audio_s": audio_s, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(rows))
    bad = sum(r["wrong_text"] + r["http_errors"] + r["lost"] + r["not_sent"] for r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
