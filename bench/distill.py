"""Distillation step time: one shared encoder pass vs each model running its own encoder.

The student's encoder is the teacher's, frozen, so a training step needs ONE encoder
pass for both decoders (``shared``). A straightforward step runs the student model
whole and the teacher model whole (``naive``: two encoder passes). Both train the
same student with the same loss on the same batch; the script first checks they
compute the same logits, then times them interleaved (A B A B ...) and reports
samples/s of each and their ratio, also as JSON. A third mode, ``cached``, is the
shared step with the encoder-output cache warm (``train.encoder_cache_gb``): what
every epoch after the first costs on a multi-epoch run. A fourth, ``frozen-kv``, is the
cached step of a student whose cross-attention key/value projections are frozen
(``model.freeze_cross_attention_kv``): it reads the teacher's keys and values over the
audio instead of computing, and differentiating, its own.

    python bench/distill.py                       # tiny.en teacher, 2-layer student, CPU
    python bench/distill.py --autocast bf16        # the same in bf16 (CPUs with AMX/AVX-512 BF16)
    python bench/distill.py --teacher openai/whisper-large-v3 --batch-size 16 --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("bench.distill")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="tiny.en", help="teacher model reference")
    parser.add_argument("--decoder-layers", type=int, default=2, help="student decoder layers")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per step")
    parser.add_argument("--label-tokens", type=int, default=40, help="pseudo-label length")
    parser.add_argument("--rounds", type=int, default=4, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode first")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--autocast",
        choices=["auto", "off", "bf16"],
        default="auto",
        help="bf16 autocast as train.autocast: auto = on GPU only; bf16 also on CPU",
    )
    parser.add_argument("--out", default="bench/results/distill.json", help="JSON results file")
    return parser.parse_args(argv)


def make_batch(processor, batch_size: int, label_tokens: int, device) -> dict[str, torch.Tensor]:
    """Log-mel of 8 s of noise per row and random pseudo-label ids (cost depends on shapes only)."""
    from distilray.distill.collate import pad_labels
    from distilray.features import log_mel

    rng = np.random.default_rng(0)
    audios = [rng.normal(0, 0.05, 8 * 16000).astype(np.float32) for _ in range(batch_size)]
    features = torch.from_numpy(log_mel(processor.feature_extractor, audios))
    start = 50257
    seqs = [[start, *rng.integers(0, 50000, label_tokens - 2).tolist(), 50256] for _ in audios]
    batch = {
        "input_features": features,
        **pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=start, max_tokens=448),
    }
    return {k: v.to(device) for k, v in batch.items()}


def check_same_logits(student, teacher, batch) -> float:
    """Largest difference between shared and naive logits (should be ~0)."""
    from distilray.distill.step import naive_logits, shared_logits

    with torch.no_grad():
        s1, t1 = shared_logits(student, teacher, batch)
        s2, t2 = naive_logits(student, teacher, batch)
    return max((s1 - s2).abs().max().item(), (t1 - t2).abs().max().item())


def time_modes(student, teacher, batch, layers, args, amp_dtype) -> dict[str, list[float]]:
    """Per-step seconds of each mode, steps interleaved so load drift hits both alike."""
    import copy

    from distilray.distill.config import OptimSection
    from distilray.distill.encoder_cache import EncoderCache
    from distilray.distill.losses import DistillationLoss
    from distilray.distill.optim import build_optimizer
    from distilray.distill.step import train_step
    from distilray.student.layers import freeze_cross_attention_kv

    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=0), 10_000)
    loss_fn = DistillationLoss()
    frozen = copy.deepcopy(student)
    freeze_cross_attention_kv(frozen)
    frozen_optimizer, frozen_scheduler = build_optimizer(
        frozen, OptimSection(warmup_steps=0), 10_000
    )
    times: dict[str, list[float]] = {"shared": [], "naive": [], "cached": [], "frozen-kv": []}
    cache = EncoderCache(max_bytes=2**34)  # filled by the warm-up step: later epochs' case
    with_ids = {**batch, "ids": [f"row-{i}" for i in range(batch["input_features"].shape[0])]}
    sync = torch.cuda.synchronize if batch["input_features"].is_cuda else (lambda: None)
    for i in range(args.warmup + args.rounds):
        for mode in times:
            sync()
            start = time.perf_counter()
            kv = mode == "frozen-kv"
            train_step(
                frozen if kv else student,
                teacher,
                loss_fn,
                frozen_optimizer if kv else optimizer,
                frozen_scheduler if kv else scheduler,
                with_ids if mode in ("cached", "frozen-kv") else batch,
                amp_dtype=amp_dtype,
                share_encoder=mode != "naive",
                encoder_cache=cache if mode in ("cached", "frozen-kv") else None,
                shared_cross_kv=layers if kv else None,
            )
            sync()
            if i >= args.warmup:
                times[mode].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from distilray.models import load_whisper
    from distilray.student import build_student, select_layers

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    amp_dtype = (
        torch.bfloat16
        if args.autocast == "bf16" or (args.autocast == "auto" and device.type == "cuda")
        else None
    )
    teacher, processor = load_whisper(args.teacher, dtype=torch.float32)
    layers = select_layers(teacher.config.decoder_layers, args.decoder_layers)
    student = build_student(teacher, layers).to(device).train()
    student.model.encoder.requires_grad_(False)
    teacher.to(device).requires_grad_(False)
    batch = make_batch(processor, args.batch_size, args.label_tokens, device)
    max_diff = check_same_logits(student, teacher, batch)
    times = time_modes(student, teacher, batch, layers, args, amp_dtype)
    result = summarize(args, device, layers, max_diff, times)
    report(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


def summarize(args, device, layers, max_diff: float, times: dict[str, list[float]]) -> dict:
    per_mode = {}
    for mode, secs in times.items():
        median = statistics.median(secs)
        per_mode[mode] = {
            "step_s_median": median,
            "step_s_all": secs,
            "samples_per_s": args.batch_size / median,
        }
    return {
        "benchmark": "distill_step",
        "teacher": args.teacher,
        "student_decoder_layers": layers,
        "batch_size": args.batch_size,
        "label_tokens": args.label_tokens,
        "device": str(device),
        "autocast": args.autocast,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "max_logit_diff_shared_vs_naive": max_diff,
        "modes": per_mode,
        "speedup_shared_over_naive": per_mode["shared"]["samples_per_s"]
        / per_mode["naive"]["samples_per_s"],
        "speedup_cached_over_naive": per_mode["cached"]["samples_per_s"]
        / per_mode["naive"]["samples_per_s"],
        "speedup_frozen_kv_over_cached": per_mode["frozen-kv"]["samples_per_s"]
        / per_mode["cached"]["samples_per_s"],
    }


def report(result: dict) -> None:
    print(
        f"teacher {result['teacher']}, student decoder layers {result['student_decoder_layers']}, "
        f"batch {result['batch_size']}, {result['device']}, {result['torch_threads']} threads, "
        f"autocast {result['autocast']}"
    )
    print(f"shared vs naive logits: max difference {result['max_logit_diff_shared_vs_naive']:.2e}")
    for mode, row in result["modes"].items():
        print(
            f"  {mode:9s}  {row['step_s_median']:.3f} s/step  {row['samples_per_s']:.2f} samples/s"
        )
    print(f"  shared encoder pass is {result['speedup_shared_over_naive']:.2f}x the naive step")
    print(
        f"  with the encoder-output cache warm (epochs after the first) "
        f"{result['speedup_cached_over_naive']:.2f}x the naive step"
    )
    print(
        f"  frozen cross-attention keys/values read from the teacher: "
        f"{result['speedup_frozen_kv_over_cached']:.2f}x the cached step"
    )


if __name__ == "__main__":
    sys.exit(main())
