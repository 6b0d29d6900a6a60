"""Inference benchmark: greedy teacher and student, our speculative decoding, transformers' assisted generation.

On the same clips, in one run:

* teacher greedy (``model.generate``), batch 1 and batched: the reference output;
* student greedy, batch 1;
* ours: teacher verifying the student's drafts, batch 1 and batched, checked
  token for token against teacher greedy;
* the peer baseline: transformers' ``generate(assistant_model=student)`` (batch 1
  only: it refuses larger batches).

It prints latency ratios against teacher greedy, acceptance rates and teacher
passes, and writes JSON. On CPU it uses the embedded tiny.en teacher, a 2-layer
student cut from it (or ``--student``) and synthetic speech. With ``--device cuda``
it adds a throughput run on a random-weight large-v3-sized teacher (32 + 32 layers,
d_model 1280, 128 mels) with a 2-layer student in bf16, at a fixed output length
(end of text suppressed).

    python bench/inference.py --clips 8
    python bench/inference.py --device cuda --clips 32 --out bench/results/inference.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("bench.inference")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="tiny.en", help="teacher model reference")
    parser.add_argument(
        "--student", help="student model (default: teacher decoder layers 0 + last)"
    )
    parser.add_argument("--manifest", help="audio manifest (default: synthetic speech)")
    parser.add_argument("--clips", type=int, default=8, help="clips to transcribe")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of batched runs")
    parser.add_argument("--num-draft-tokens", type=int, default=5, help="drafts per round")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens per clip at most")
    parser.add_argument("--repeats", type=int, default=1, help="timed repetitions (best kept)")
    parser.add_argument(
        "--large",
        choices=["auto", "yes", "no", "small"],
        default="auto",
        help="random large-v3-sized throughput run (auto: on cuda; small: tiny dims, to test it)",
    )
    parser.add_argument("--large-new-tokens", type=int, default=128, help="forced output length")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 keeps timings stable on a busy machine)"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    return parser.parse_args(argv)


def best_time(
    fn: Callable[[], object], device: torch.device, repeats: int, name: str = ""
) -> tuple[float, object]:
    """Lowest wall time of ``repeats`` calls and the last result (progress on stderr)."""
    times, result = [], None
    for _ in range(repeats):
        _sync(device)
        began = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - began)
    print(f"  {name or 'run'}: {min(times):.3f} s", file=sys.stderr, flush=True)
    return min(times), result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_clips(args: argparse.Namespace, workdir: Path) -> list[np.ndarray]:
    """Speech clips (≤ 30 s) from ``--manifest`` or freshly synthesised."""
    from distilray.audio import decode_audio
    from distilray.data.manifest import read_manifest
    from distilray.data.synth import synthesize_dataset

    manifest = args.manifest or synthesize_dataset(workdir / "synth", args.clips, split="test")
    table = read_manifest(manifest).slice(0, args.clips)
    clips = []
    for row in table.to_pylist():
        audio = decode_audio(row["audio_bytes"] or row["audio_path"])
        clips.append(audio[: 30 * 16000])
    return clips


def load_models(args: argparse.Namespace, device: torch.device):
    from distilray.models import load_whisper
    from distilray.student import build_student

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    teacher, processor = load_whisper(args.teacher, device=str(device), dtype=dtype)
    if args.student:
        student = load_whisper(args.student, device=str(device), dtype=dtype)[0]
    else:
        student = build_student(teacher, [0, teacher.config.decoder_layers - 1]).to(device, dtype)
    return teacher, student, processor


def run_suite(teacher, student, processor, features: torch.Tensor, args, *, label: str) -> dict:
    """Every decoding variant on the same features; timings, ratios and equality checks."""
    from distilray.inference.shortform import generate_greedy
    from distilray.inference.speculative import speculative_generate

    device, n, bs, k = teacher.device, features.shape[0], args.batch_size, args.num_draft_tokens
    max_new = args.max_new_tokens
    rows = [features[i : i + 1] for i in range(n)]
    batches = [features[i : i + bs] for i in range(0, n, bs)]

    def greedy(model, parts):
        return [
            s
            for part in parts
            for s in generate_greedy(model, processor, part, max_new_tokens=max_new)
        ]

    def ours(parts, schedule="constant"):
        return [
            speculative_generate(
                teacher, student, p, num_draft_tokens=k, schedule=schedule, max_new_tokens=max_new
            )
            for p in parts
        ]

    def peer():
        return [_assisted(teacher, student, r, max_new) for r in rows]

    _warm_up(teacher, student, processor, features[:1])
    results: dict[str, dict] = {}
    t, reference = best_time(lambda: greedy(teacher, rows), device, args.repeats, "teacher b1")
    results["teacher greedy b1"] = {"seconds": t}
    t, ref_batched = best_time(
        lambda: greedy(teacher, batches), device, args.repeats, "teacher batched"
    )
    results[f"teacher greedy b{bs}"] = {"seconds": t, "same_as_b1": ref_batched == reference}
    t, _ = best_time(lambda: greedy(student, rows), device, args.repeats, "student b1")
    results["student greedy b1"] = {"seconds": t}
    # Each speculative run is checked against greedy at the same batch size: batched
    # kernels may round differently from single-row ones on a GPU.
    spec_runs = (
        ("ours speculative b1", rows, reference, "constant"),
        ("ours speculative b1 heuristic-k", rows, reference, "heuristic"),
        (f"ours speculative b{bs}", batches, ref_batched, "constant"),
    )
    for name, parts, want, schedule in spec_runs:
        t, outs = best_time(
            lambda parts=parts, schedule=schedule: ours(parts, schedule), device, args.repeats, name
        )
        seqs = [s for o in outs for s in o.sequences]
        stats = sum((o.stats for o in outs), start=type(outs[0].stats)())
        results[name] = {
            "seconds": t,
            "identical": seqs == want,
            "acceptance_rate": stats.acceptance_rate,
            "teacher_passes": stats.teacher_passes,
            "tokens": stats.generated,
        }
    t, peer_out = best_time(peer, device, args.repeats, "transformers assisted b1")
    same = sum(a == b for a, b in zip(peer_out, reference, strict=True))
    results["transformers assisted b1"] = {
        "seconds": t,
        "identical": same == n,
        "rows_identical": same,
    }
    for name, r in results.items():
        base = results[
            f"teacher greedy b{bs}" if name.endswith(f"b{bs}") and bs > 1 else "teacher greedy b1"
        ]
        r["latency_vs_teacher"] = r["seconds"] / base["seconds"]
    return {
        "label": label,
        "clips": n,
        "generated_tokens": sum(len(s) + 1 for s in reference),
        "runs": results,
    }


def _warm_up(teacher, student, processor, features: torch.Tensor) -> None:
    """One short call of every path, so that no timed run pays first-call costs."""
    from distilray.inference.shortform import generate_greedy
    from distilray.inference.speculative import speculative_generate

    generate_greedy(teacher, processor, features, max_new_tokens=4)
    generate_greedy(student, processor, features, max_new_tokens=4)
    speculative_generate(teacher, student, features, max_new_tokens=8)
    _assisted(teacher, student, features, 4)


def _assisted(teacher, student, features: torch.Tensor, max_new: int) -> list[int]:
    """transformers' own assisted generation (batch 1), as generated ids like ours."""
    from distilray.inference.shortform import (
        eos_token_ids,
        generated_part,
        prompt_token_ids,
        to_model,
    )

    with torch.inference_mode():
        out = teacher.generate(
            to_model(teacher, features),
            assistant_model=student,
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=1,
        )
    if isinstance(out, dict):
        out = out["sequences"]
    config = teacher.generation_config
    return generated_part(out[0].tolist(), prompt_token_ids(config), eos_token_ids(config))


def large_random_pair(device: torch.device, size: str, new_tokens: int):
    """Random-weight large-v3-sized teacher (or a small stand-in) and a 2-layer student, bf16.

    End of text is suppressed so every row generates exactly ``new_tokens`` tokens.
    """
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    from distilray.models import resolve_model
    from distilray.student import build_student

    dims = (
        {"d_model": 1280, "layers": 32, "heads": 20, "ffn": 5120, "mels": 128}
        if size == "large"
        else {"d_model": 64, "layers": 4, "heads": 4, "ffn": 128, "mels": 128}
    )
    config = WhisperConfig(
        vocab_size=51866,
        num_mel_bins=dims["mels"],
        encoder_layers=dims["layers"],
        decoder_layers=dims["layers"],
        d_model=dims["d_model"],
        encoder_attention_heads=dims["heads"],
        decoder_attention_heads=dims["heads"],
        encoder_ffn_dim=dims["ffn"],
        decoder_ffn_dim=dims["ffn"],
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50257,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        teacher = WhisperForConditionalGeneration(config).to(dtype).eval()
    generation = GenerationConfig.from_pretrained(resolve_model("tiny.en"))
    generation.suppress_tokens = list(generation.suppress_tokens) + [generation.eos_token_id]
    generation.begin_suppress_tokens = None
    teacher.generation_config = generation
    student = build_student(teacher, [0, dims["layers"] - 1]).to(device, dtype)
    student.generation_config = copy.deepcopy(generation)
    return teacher, student, new_tokens


def large_suite(args, device: torch.device, size: str) -> dict:
    """Fixed-length throughput of greedy vs speculative on the random large pair."""
    from transformers import WhisperFeatureExtractor

    teacher, student, new_tokens = large_random_pair(device, size, args.large_new_tokens)
    processor = type("P", (), {"feature_extractor": WhisperFeatureExtractor(feature_size=128)})()
    n = args.batch_size
    features = torch.randn(n, 128, 3000, generator=torch.Generator().manual_seed(0))
    sub = copy.copy(args)
    sub.max_new_tokens = new_tokens
    label = f"random {size} {str(teacher.dtype).removeprefix('torch.')}"
    result = run_suite(teacher, student, processor, features, sub, label=label)
    for run in result["runs"].values():
        run["tokens_per_s"] = n * new_tokens / run["seconds"]
    return result


def print_table(suite: dict) -> None:
    print(f"\n{suite['label']}: {suite['clips']} clips, {suite['generated_tokens']} tokens")
    print(
        f"{'run':32} {'seconds':>9} {'vs teacher':>10} {'identical':>9} {'accept':>7} {'passes':>7}"
    )
    for name, r in suite["runs"].items():
        acc = f"{r['acceptance_rate']:.2f}" if "acceptance_rate" in r else "-"
        passes = str(r.get("teacher_passes", "-"))
        same = {True: "yes", False: "NO"}.get(r.get("identical"), "-")
        ratio = r["latency_vs_teacher"]
        print(f"{name:32} {r['seconds']:9.3f} {ratio:10.2f} {same:>9} {acc:>7} {passes:>7}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no GPU is visible", file=sys.stderr)
        return 2
    from distilray.features import log_mel

    suites = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher, student, processor = load_models(args, device)
        clips = load_clips(args, Path(tmp))
        features = torch.from_numpy(log_mel(processor.feature_extractor, clips))
        suites.append(run_suite(teacher, student, processor, features, args, label=args.teacher))
    large = {"auto": "large" if device.type == "cuda" else None, "yes": "large", "no": None}.get(
        args.large, "small"
    )
    if large:
        suites.append(large_suite(args, device, large))
    for suite in suites:
        print_table(suite)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": str(device), "threads": torch.get_num_threads(), "suites": suites}
        Path(args.out).write_text(json.dumps(meta, indent=2) + "\n")
    ok = all(
        r.get("identical", True)
        for s in suites
        for n, r in s["runs"].items()
        if n.startswith("ours")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
