"""On-policy distillation: the teacher corrects the student on the student's own output.

Teacher forcing only ever shows the student prefixes the teacher wrote, so it never
learns what to do once its own decoding has gone wrong: a student that repeats a
phrase once keeps repeating it (exposure bias). Here, on some steps, the student
greedily transcribes part of the batch itself, and the KL term is also taken on
those sequences: at every position of its own transcript (a loop included) the
student is pulled towards the teacher's next-token distribution, which says "stop"
or "go on with the audio" where the student would loop. This is the generalised
knowledge distillation of Agarwal et al. (2024, "On-Policy Distillation of Language
Models: Learning from Self-Generated Mistakes") with the forward KL of the paper's
loss; it is not part of Distil-Whisper's recipe.

A small teacher is a poor guide inside a loop: given a prefix that already repeats,
tiny.en itself predicts more of the same. The second on-policy term does not ask the
teacher: where the student's own transcript repeats a phrase more often than the
row's pseudo-label does (:func:`excess_repeats`), the probability it gave each
surplus token is pushed down (unlikelihood training, Welleck et al. 2020, "Neural
Text Generation with Unlikelihood Training", counted against the label so that
speech that really repeats a word is not penalised).

:func:`rollout` decodes; :func:`scored_sequences` turns the rollouts into decoder
inputs and the positions whose predictions the KL reads. The training step runs both
decoders once over the batch's own rows and these rows together (one forward, one
backward, so DistributedDataParallel sees an ordinary step).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class OnPolicy:
    """What the on-policy term needs to know (from ``loss.on_policy_*``)."""

    weight: float  # of the T²-scaled KL on the student's own transcripts
    max_new_tokens: int  # rollout cap (also <= 1.5 x the batch's longest label + 8)
    no_timestamps_id: int  # rows whose prompt ends here are transcribed without timestamps
    eos_id: int
    repetition_weight: float = 0.0  # of the unlikelihood of surplus repeats (excess_repeats)
    max_rows: int | None = None  # rows transcribed per rollout (None: all)
    shortest: bool = False  # max_rows takes the rows with the shortest labels, not the first
    synthetic: bool = False  # the repetition term's loops are made from the labels (no rollout)
    loops_at_end: bool = False  # synthetic loops start only where the label ends
    deviation_weight: float = 0.0  # of the KL on labels with slips (distill.deviations)
    deviation_rows: int = 4  # rows of a batch given slips (the first without timestamps)
    deviation_rate: float = 0.05  # share of a slipped label's tokens replaced (at least one)
    punctuation_ids: tuple[int, ...] = ()  # marks a slip swaps for one another

    @property
    def rolls(self) -> bool:
        """Whether the rollout/loop terms are on (the deviations need no rollout)."""
        return self.weight > 0 or self.repetition_weight > 0


@dataclass(frozen=True)
class Rollouts:
    """The student's transcripts of some rows, ready to be scored by both decoders."""

    rows: torch.Tensor  # (r,) indices into the batch
    input_ids: torch.Tensor  # (r, L) prompt + generated tokens but the last
    attention_mask: torch.Tensor  # (r, L)
    positions: torch.Tensor  # (r, L) bool: the predictions of the generated tokens
    excess: torch.Tensor  # (r, L) bool: of those, the predictions of surplus repeats
    targets: torch.Tensor  # (r, L) the token each position predicts (its next input)
    scored: int  # generated tokens of all the rollouts (the repetition term's denominator)

    def surplus_only(self) -> Rollouts | None:
        """Only the rows with surplus repeats, scored only there (None when no row has
        any): what the repetition term alone needs, without projecting every token."""
        keep = self.excess.any(dim=1)
        if not bool(keep.any()):
            return None
        return Rollouts(
            self.rows[keep],
            self.input_ids[keep],
            self.attention_mask[keep],
            self.excess[keep],
            self.excess[keep],
            self.targets[keep],
            self.scored,
        )


REPEAT_NGRAM = 4  # tokens: " um", ",", " um", "," is one unit of a filler loop


def excess_repeats(generated: list[int], reference: list[int], n: int = REPEAT_NGRAM) -> list[bool]:
    """For each token of ``generated``: whether it ends an ``n``-gram that ``generated``
    has by then said more often than ``reference`` says it (any n-gram may be said once).

    A transcript that loops repeats its n-grams far beyond the label's count; speech
    that really repeats a word ("word, word, word") has the repeats in its label too,
    and only the surplus is marked.

    >>> excess_repeats([1, 2, 1, 2, 1, 2], [1, 2, 1, 2], n=2)
    [False, False, False, False, True, True]
    >>> excess_repeats([5, 6, 7], [], n=2)
    [False, False, False]
    """
    allowed = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
    seen: Counter[tuple[int, ...]] = Counter()
    marks = [False] * len(generated)
    for end in range(n - 1, len(generated)):
        gram = tuple(generated[end - n + 1 : end + 1])
        seen[gram] += 1
        marks[end] = seen[gram] > max(allowed[gram], 1)
    return marks


def prompt_rows(decoder_input_ids: torch.Tensor, no_timestamps_id: int) -> tuple[torch.Tensor, int]:
    """Rows whose prompt is ``… <|notimestamps|>`` at the most common position, and the
    prompt's length (0 rows when none has one)."""
    hits = decoder_input_ids == no_timestamps_id
    has = hits.any(dim=1)
    if not bool(has.any()):
        return torch.zeros(0, dtype=torch.long, device=decoder_input_ids.device), 0
    first = hits.float().argmax(dim=1)
    length = int(torch.mode(first[has]).values) + 1
    rows = torch.nonzero(has & (first == length - 1)).flatten()
    return rows, length


@torch.no_grad()
def rollout(
    model: nn.Module,
    encoder_states: torch.Tensor,
    prompt: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
) -> torch.Tensor:
    """The student's greedy continuation ``(rows, n)`` of ``prompt`` (eos-padded after
    each row's end of text), with the decoder's key/value cache."""
    decoder = model.model.decoder
    out = decoder(input_ids=prompt, encoder_hidden_states=encoder_states, use_cache=True)
    cache = out.past_key_values
    logits = model.proj_out(out.last_hidden_state[:, -1])
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    tokens = []
    for _ in range(max_new_tokens):
        nxt = torch.where(done, torch.full_like(done, eos_id, dtype=torch.long), logits.argmax(-1))
        tokens.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()):
            break
        out = decoder(
            input_ids=nxt[:, None],
            encoder_hidden_states=encoder_states,
            past_key_values=cache,
            use_cache=True,
        )
        cache = out.past_key_values
        logits = model.proj_out(out.last_hidden_state[:, -1])
    return torch.stack(tokens, dim=1)


def scored_sequences(prompt: torch.Tensor, generated: torch.Tensor, eos_id: int):
    """Decoder inputs, mask and scored positions for ``prompt`` + ``generated``.

    A row's generated tokens run to its first end of text (included) or to the cap;
    position ``t`` of the input predicts token ``t + 1``, so the positions scored are
    ``P - 1 … P + n_row - 2`` and the input stops one token before the row's end.
    """
    rows, n = generated.shape
    p = prompt.shape[1]
    is_eos = generated == eos_id
    ends = torch.where(
        is_eos.any(dim=1),
        is_eos.float().argmax(dim=1) + 1,
        torch.full_like(is_eos[:, 0], n, dtype=torch.long),
    )
    sequence = torch.cat([prompt, generated], dim=1)[:, :-1]  # (rows, p + n - 1)
    index = torch.arange(sequence.shape[1], device=sequence.device)[None]
    attention_mask = (index < (p - 1 + ends)[:, None]).long()
    positions = (index >= p - 1) & (index < (p - 1 + ends)[:, None])
    return sequence, attention_mask, positions


def student_rollouts(
    model: nn.Module,
    encoder_states: torch.Tensor,
    decoder_input_ids: torch.Tensor,
    labels: torch.Tensor,
    spec: OnPolicy,
    ignore_index: int = -100,
) -> Rollouts | None:
    """The student's own transcripts of the batch's rows without timestamps (None
    when it has none). ``labels``: the batch's (rows, seq) labels, ``ignore_index``
    where a position carries none."""
    labelled = labels != ignore_index
    rows, length = pick_rows(decoder_input_ids, labelled, spec, spec.max_rows, spec.shortest)
    if rows.numel() == 0:
        return None
    longest = int(labelled.sum(dim=1)[rows].max())
    cap = max(1, min(spec.max_new_tokens, int(1.5 * longest) + 8))
    prompt = decoder_input_ids[rows, :length]
    was_training = model.training
    model.eval()  # greedy decoding as at inference (no dropout)
    try:
        generated = rollout(model, encoder_states[rows], prompt, cap, spec.eos_id)
    finally:
        model.train(was_training)
    return _marked(rows, prompt, generated, labels, labelled, spec.eos_id)


def pick_rows(
    decoder_input_ids: torch.Tensor,
    labelled: torch.Tensor,
    spec: OnPolicy,
    max_rows: int | None,
    shortest: bool,
) -> tuple[torch.Tensor, int]:
    """The rows without timestamps that a term uses (``max_rows`` of them, the first
    or the shortest; None: all), and their prompt's length."""
    rows, length = prompt_rows(decoder_input_ids, spec.no_timestamps_id)
    if rows.numel() == 0 or max_rows is None:
        return rows, length
    if shortest:  # a rollout's cost grows with its rows and their length
        order = torch.argsort(labelled.sum(dim=1)[rows], stable=True)
        return rows[order[:max_rows]].sort().values, length
    return rows[:max_rows], length


def _marked(
    rows: torch.Tensor,
    prompt: torch.Tensor,
    generated: torch.Tensor,
    labels: torch.Tensor,
    labelled: torch.Tensor,
    eos_id: int,
) -> Rollouts:
    """``generated`` (eos-padded continuations of ``prompt`` for ``rows``) as scored
    sequences, their surplus repeats against each row's label marked."""
    ids, mask, positions = scored_sequences(prompt, generated, eos_id)
    targets = torch.cat([prompt, generated], dim=1)[:, 1:]
    excess = torch.zeros_like(positions)
    for r, row in enumerate(rows.tolist()):
        reference = labels[row][labelled[row]].tolist()
        scored = positions[r].nonzero().flatten()
        marks = excess_repeats(targets[r, scored].tolist(), reference)
        excess[r, scored] = torch.tensor(marks, dtype=torch.bool, device=excess.device)
    return Rollouts(rows, ids, mask, positions, excess, targets, int(positions.sum()))


LOOP_SPAN = 8  # longest phrase (tokens) a synthetic loop repeats
LOOP_REPEATS = (2, 5)  # how many extra times it is said, at least and at most
LOOP_TOKENS = 2 * REPEAT_NGRAM  # fewest repeated tokens: its 4-token phrases then repeat


def made_loop(text: list[int], rng: random.Random, at_end: bool = False) -> list[int]:
    """``text`` (a label's tokens between prompt and end of text) cut where a loop
    starts, followed by the loop: the phrase just said, said again 2-5 more times
    (at least 8 repeated tokens, so that 4-token phrases repeat beyond the label).

    Half the loops start at the end of the text (a student that does not stop repeats
    what it said last), the others anywhere in it; with ``at_end`` all of them start
    at its end, where ending the transcript is the right way out of the loop.

    >>> made_loop([10, 11, 12], random.Random(0))
    [10, 11, 11, 11, 11, 11, 11, 11, 11, 11]
    >>> made_loop([10, 11, 12], random.Random(0), at_end=True)[:7]
    [10, 11, 12, 11, 12, 11, 12]
    """
    if not text:
        return []
    end = len(text) if at_end or rng.random() < 0.5 else rng.randint(1, len(text))
    span = text[end - rng.randint(1, min(LOOP_SPAN, end)) : end]
    repeats = max(rng.randint(*LOOP_REPEATS), -(-LOOP_TOKENS // len(span)))
    return text[:end] + span * repeats


def label_texts(
    labels: torch.Tensor, labelled: torch.Tensor, rows: torch.Tensor, length: int, eos_id: int
) -> list[list[int]]:
    """The text tokens of each of ``rows``' labels: after the prompt (``length`` tokens,
    the first of which the labels do not hold) and before the end of text."""
    texts = []
    for row in rows.tolist():
        text = labels[row][labelled[row]].tolist()[length - 1 :]  # text, end of text
        texts.append(text[:-1] if text and text[-1] == eos_id else text)
    return texts


def synthetic_loops(
    decoder_input_ids: torch.Tensor,
    labels: torch.Tensor,
    spec: OnPolicy,
    seed: int,
    ignore_index: int = -100,
) -> Rollouts | None:
    """Loops made from the batch's own labels, no decoding (None when no row is
    without timestamps): each picked row's label is cut where a loop starts and the
    phrase before the cut is said again several times (:func:`made_loop`); the
    surplus repeats are marked against the label as in :func:`student_rollouts`.

    What the student's own rollouts find only while it still loops (and at the cost
    of a greedy decoding per step), these sequences show it on every step: teacher
    forced on a prefix that already repeats itself, it learns not to say the phrase
    yet again. ``seed`` makes the loops of a step reproducible (a resumed run draws
    the same).
    """
    labelled = labels != ignore_index
    rows, length = pick_rows(decoder_input_ids, labelled, spec, spec.max_rows, spec.shortest)
    if rows.numel() == 0:
        return None
    rng = random.Random(seed)
    loops = [
        made_loop(text, rng, spec.loops_at_end) or [spec.eos_id]
        for text in label_texts(labels, labelled, rows, length, spec.eos_id)
    ]
    generated = torch.full(
        (len(loops), max(map(len, loops))), spec.eos_id, dtype=torch.long, device=labels.device
    )
    for r, loop in enumerate(loops):
        generated[r, : len(loop)] = torch.tensor(loop, dtype=torch.long, device=labels.device)
    prompt = decoder_input_ids[rows, :length]
    return _marked(rows, prompt, generated, labels, labelled, spec.eos_id)


def unlikelihood(
    logits: torch.Tensor, targets: torch.Tensor, marked: torch.Tensor, total: int | None = None
) -> torch.Tensor:
    """``-log(1 - p(target))`` summed over the ``marked`` rows of ``logits`` and divided
    by ``total`` (default: all rows) (``logits``: (n, vocab); ``targets``, ``marked``:
    (n,)); 0 when none is marked.

    >>> import torch
    >>> logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    >>> round(unlikelihood(logits, torch.tensor([0, 1]), torch.tensor([False, True])).item(), 4)
    0.3466
    """
    if not bool(marked.any()):
        return logits.sum() * 0.0  # keeps the graph (DDP expects every step's gradients)
    probs = torch.softmax(logits[marked].float(), dim=-1)
    p = probs.gather(1, targets[marked][:, None]).squeeze(1)
    return -torch.log1p(-p.clamp(max=1 - 1e-6)).sum() / (total or logits.shape[0])


def pad_to(tensor: torch.Tensor, length: int, value) -> torch.Tensor:
    """``tensor`` (rows, seq) right-padded with ``value`` to ``length`` columns."""
    extra = length - tensor.shape[1]
    if extra <= 0:
        return tensor
    pad = torch.full((tensor.shape[0], extra), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, pad], dim=1)
