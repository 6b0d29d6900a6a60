"""Where a student's loop comes from: both models read each other's transcript.

A student that loops where its teacher does not has either lost the audio (on the
teacher's own transcript it already prefers the repeat: it does not hear the words
that end the run) or been led off by its own output (on the teacher's transcript it
follows, and only its own repeats lead it on: exposure bias, which the teacher's
next-token distribution on the student's transcript would correct). This decodes one
clip greedily with teacher and student, then teacher-forces each model on both
transcripts and prints, at every generated position, the token there and each
model's most likely next token, e.g.::

    python bench/loop_probe.py --student runs/demo/student \\
        runs/demo/real/test/audio/mfa-mfa_uhum.wav

Tokens that greedy decoding suppresses (Whisper's suppress list, special tokens and
timestamps, except the end of text) are masked as decoding masks them, so each
model's top token on its own transcript is the token it wrote (printed as a check).
``--out`` writes every position as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path, help="one clip of at most 30 s")
    parser.add_argument("--student", required=True, help="student model (folder, s3://, hub id)")
    parser.add_argument("--teacher", default="tiny.en", help="teacher model (default: tiny.en)")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=None, help="also write every position here")
    return parser.parse_args(argv)


def allowed_mask(model) -> torch.Tensor:
    """True for the tokens greedy decoding without timestamps may emit."""
    config = model.generation_config
    vocab = model.config.vocab_size
    mask = torch.zeros(vocab, dtype=torch.bool)
    mask[: config.eos_token_id + 1] = True  # text tokens and the end of text
    for token in getattr(config, "suppress_tokens", None) or []:
        if token < vocab:
            mask[token] = False
    return mask


@torch.no_grad()
def next_token_probs(model, encoder_states, prompt: list[int], ids: list[int], allowed):
    """``(len(ids) + 1, vocab)``: the model's next-token distribution after the prompt
    and after each token of ``ids`` (the last row predicts what follows ``ids``)."""
    tokens = torch.tensor([prompt + ids])
    logits = model(encoder_outputs=(encoder_states,), decoder_input_ids=tokens).logits[0]
    logits = logits[len(prompt) - 1 :].masked_fill(~allowed, float("-inf"))
    return logits.softmax(-1)


def read_path(path_ids, ended, prompt, encoded, models, allowed, tokenizer) -> list[dict]:
    """Per position of ``path_ids`` (and its end of text when ``ended``): the token there
    and each model's top token, with both probabilities (``encoded``: each model's
    encoder output)."""
    eos = models["teacher"].generation_config.eos_token_id
    probs = {
        name: next_token_probs(m, encoded[name], prompt, path_ids, allowed)
        for name, m in models.items()
    }
    rows = []
    for i, token in enumerate([*path_ids, eos] if ended else path_ids):
        row = {"position": i, "token": tokenizer.decode([token])}
        for name, p in probs.items():
            top = int(p[i].argmax())
            row[name] = {
                "top": tokenizer.decode([top]),
                "p_top": round(float(p[i, top]), 3),
                "p_token": round(float(p[i, token]), 3),
            }
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from distilray.audio import decode_audio
    from distilray.errors import DistilrayError
    from distilray.features import log_mel
    from distilray.inference.decoder import GreedyDecoder
    from distilray.inference.windows import is_long_form
    from distilray.models import load_whisper

    try:
        audio = decode_audio(str(args.audio))
        if is_long_form(len(audio)):
            raise DistilrayError("the probe reads one window: give a clip of at most 30 s")
        teacher, processor = load_whisper(args.teacher)
        student, _ = load_whisper(args.student)
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    models = {"teacher": teacher, "student": student}
    tokenizer = processor.tokenizer
    features = torch.as_tensor(log_mel(processor.feature_extractor, [audio]))
    with torch.no_grad():  # a distilled student's encoder is the teacher's; others differ
        encoded = {name: m.model.encoder(features).last_hidden_state for name, m in models.items()}
    allowed = allowed_mask(teacher)
    report = {"audio": str(args.audio), "paths": {}}
    for name, model in models.items():
        decoder = GreedyDecoder(model, processor, max_new_tokens=args.max_new_tokens)
        decoded = decoder.decode(features)
        ids, prompt = decoded.ids[0], decoded.prompts[0]
        ended = len(ids) < decoder.max_new_tokens  # else it stopped at the token limit
        rows = read_path(ids, ended, prompt, encoded, models, allowed, tokenizer)
        own = sum(r[name]["top"] == r["token"] for r in rows)
        report["paths"][name] = {"text": tokenizer.decode(ids), "positions": rows}
        print(f"\n{name}'s transcript: {tokenizer.decode(ids).strip()}")
        print(f"  ({own}/{len(rows)} positions: {name}'s top token is the one it wrote)")
        print(f"  {'pos':>3}  {'token':<12} {'teacher top (p)':<22} {'student top (p)':<22}")
        for r in rows:
            t, s = r["teacher"], r["student"]
            flag = "  <- differ" if t["top"] != s["top"] else ""
            print(
                f"  {r['position']:>3}  {r['token']!r:<12} "
                f"{t['top']!r:>12} {t['p_top']:.2f}      {s['top']!r:>12} {s['p_top']:.2f}{flag}"
            )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
