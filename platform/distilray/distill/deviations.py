"""Labels with a few tokens changed: the teacher shows the student how to go on after a slip.

Teacher forcing only shows the student prefixes the teacher wrote. At inference a
student writes its own, and a small, harmless difference (``Hello?`` where the teacher
wrote ``Hello.``) puts it in a context it was never trained in: the quality student of
README ablation row 108 then says "Hello?" five times and ends a 30 s conversation, while
on the teacher's own transcript it follows every word. Rolling the student out to find
such slips costs a greedy decoding per step (and inside a loop the teacher is a poor
guide); here the slips are made from the labels instead. A few tokens of some rows'
pseudo-labels are replaced (a punctuation mark by another, any other token by a token
of those rows' labels), both decoders read the changed row, and the student is pulled
towards the teacher's next-token distribution at every position from the first change
on: what the teacher does after that slip, which is to go on with what the audio says.
This is scheduled sampling (Bengio et al. 2015) with the teacher, not the label, as the
target after the slip; it is not part of Distil-Whisper's recipe.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from distilray.distill.on_policy import OnPolicy, Rollouts, label_texts, pick_rows

PUNCTUATION = (".", ",", "?", "!")  # interchangeable marks, as the tokenizer spells them


def slipped(
    text: list[int],
    rng: random.Random,
    rate: float,
    punctuation: Sequence[int],
    words: Sequence[int],
) -> tuple[list[int], int | None]:
    """``text`` (a label's tokens between prompt and end of text) with about ``rate``
    of its tokens, and at least one, replaced by another token, and the index of the
    first replaced (None when no token has a replacement).

    A punctuation mark becomes another one, any other token another token of ``words``
    (the slipped rows' label tokens: words the student might well say instead).

    >>> slipped([5, 1, 6, 2], random.Random(0), 0.0, punctuation=[1, 2], words=[6, 7])
    ([5, 1, 6, 1], 3)
    """
    picks = [i for i in range(len(text)) if rng.random() < rate] or [rng.randrange(len(text))]
    out = list(text)
    changed = []
    for i in picks:
        pool = punctuation if out[i] in punctuation else words
        others = [token for token in pool if token != out[i]]
        if others:
            out[i] = rng.choice(others)
            changed.append(i)
    return out, (changed[0] if changed else None)


def label_deviations(
    decoder_input_ids: torch.Tensor,
    labels: torch.Tensor,
    spec: OnPolicy,
    seed: int,
    ignore_index: int = -100,
) -> Rollouts | None:
    """Rows of the batch (``spec.deviation_rows`` of those without timestamps, the
    first) with slips in their labels (:func:`slipped`), scored from the first slip's
    position to the end of text; None when no row is without timestamps or none could
    slip (a label whose only word is said again and again has no other word to slip to).

    ``seed`` makes a step's slips reproducible (a resumed run draws the same).
    """
    labelled = labels != ignore_index
    rows, length = pick_rows(decoder_input_ids, labelled, spec, spec.deviation_rows, False)
    if rows.numel() == 0:
        return None
    eos = spec.eos_id
    texts = label_texts(labels, labelled, rows, length, eos)
    words = sorted({t for text in texts for t in text if t < eos} - set(spec.punctuation_ids))
    if not words:
        return None
    rng = random.Random(f"slips-{seed}")  # not the draws of the loops of the same step
    device = labels.device
    width = length - 1 + max(len(t) for t in texts) + 1
    input_ids = torch.full((len(texts), width), eos, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    positions = torch.zeros_like(input_ids, dtype=torch.bool)
    prompt = decoder_input_ids[rows, :length]
    for r, text in enumerate(texts):
        first = None
        if text:
            text, first = slipped(text, rng, spec.deviation_rate, spec.punctuation_ids, words)
        # input: prompt + text (the prediction of each next token, then of the end of text)
        sequence = torch.cat([prompt[r], torch.tensor(text, dtype=torch.long, device=device)])
        input_ids[r, : len(sequence)] = sequence
        mask[r, : len(sequence)] = 1
        if first is not None:  # the prediction after the first slipped token, and later ones
            positions[r, length + first : len(sequence)] = True
    if not bool(positions.any()):  # no token had another to slip to
        return None
    targets = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1)  # unused by the KL
    return Rollouts(rows, input_ids, mask, positions, torch.zeros_like(positions), targets, 0)
