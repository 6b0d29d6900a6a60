"""Speculative decoding: a student drafts, the teacher verifies, outputs stay the teacher's.

Each round the student (assistant) decoder drafts ``k`` tokens greedily; the
teacher decoder scores all of them in one forward pass and keeps the longest
prefix that matches its own greedy choices, plus its own next token. The result
is token for token the teacher's greedy output, at the cost of one teacher pass
per round instead of one per token.

The audio is encoded once, by the teacher's encoder; the student's decoder attends
to the same encoder output (a Distil-Whisper student's encoder is a frozen copy of
the teacher's). Unlike transformers' assisted generation this works on batches:
every row accepts its own number of drafts and leaves the batch when done (see
:mod:`distilray.inference.ragged`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from distilray.errors import ModelLoadError
from distilray.inference.decoding import DecodingSetup, greedy_tokens, prepare_decoding
from distilray.inference.ragged import RaggedDecoder
from distilray.inference.shortform import to_model

logger = logging.getLogger(__name__)

COMPACT_SLACK = 16  # cache columns of rejected drafts tolerated before compacting
MAX_DRAFT_TOKENS = 16  # ceiling of the "heuristic" schedule
SCHEDULES = ("constant", "heuristic")


@dataclass
class SpeculativeStats:
    """Counters of one or more speculative decoding calls (addable)."""

    drafted: int = 0  # draft tokens the teacher checked
    accepted: int = 0  # draft tokens it agreed with
    teacher_passes: int = 0  # teacher decoder forward passes (prefill included)
    student_passes: int = 0  # student decoder forward passes
    generated: int = 0  # tokens emitted (end of text included)

    @property
    def acceptance_rate(self) -> float:
        """Accepted draft tokens / drafted tokens (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    def __add__(self, other: SpeculativeStats) -> SpeculativeStats:
        return SpeculativeStats(
            self.drafted + other.drafted,
            self.accepted + other.accepted,
            self.teacher_passes + other.teacher_passes,
            self.student_passes + other.student_passes,
            self.generated + other.generated,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": self.acceptance_rate,
            "teacher_passes": self.teacher_passes,
            "student_passes": self.student_passes,
            "generated": self.generated,
        }


@dataclass
class _Row:
    """Decoding state of one batch row."""

    prompt: list[int]
    generated: list[int] = field(default_factory=list)  # emitted tokens, last one pending
    student_todo: list[int] = field(default_factory=list)  # tokens the student has not seen
    done: bool = False
    scores: list[torch.Tensor] = field(default_factory=list)  # with keep_scores: one per emitted
    stats: SpeculativeStats = field(default_factory=lambda: SpeculativeStats(teacher_passes=1))

    @property
    def prefix(self) -> list[int]:
        return self.prompt + self.generated


@dataclass
class SpeculativeOutput:
    """Token ids and counters of one speculative batch."""

    sequences: list[list[int]]  # generated tokens per row (no prompt, no end of text)
    stats: SpeculativeStats  # batch totals (teacher_passes counts batched passes)
    row_stats: list[SpeculativeStats]  # per row (teacher_passes: passes the row took part in)
    prompts: list[list[int]] = field(default_factory=list)  # decoder prompt of each row
    # per row, the teacher's processed scores (vocab,) of every emitted token (end of
    # text included), as generate's output_scores; only when asked for
    scores: list[list[torch.Tensor]] | None = None


def check_assistant(teacher, assistant) -> None:
    """The assistant must share the teacher's vocabulary and encoder width."""
    if assistant.config.vocab_size != teacher.config.vocab_size:
        raise ModelLoadError(
            f"assistant vocabulary ({assistant.config.vocab_size}) differs from the teacher's "
            f"({teacher.config.vocab_size}): speculative decoding needs the same tokenizer"
        )
    if assistant.config.d_model != teacher.config.d_model:
        raise ModelLoadError(
            f"assistant width d_model={assistant.config.d_model} differs from the teacher's "
            f"({teacher.config.d_model}): its decoder cannot attend to the teacher's encoder output"
        )


def encode(model, input_features: torch.Tensor) -> torch.Tensor:
    """Encoder output ``(batch, 1500, d_model)`` for ≤ 30 s log-mel features."""
    return model.model.encoder(to_model(model, input_features)).last_hidden_state


def speculative_generate(
    teacher,
    assistant,
    input_features: torch.Tensor,
    *,
    num_draft_tokens: int = 5,
    schedule: str = "constant",
    max_new_tokens: int = 128,
    return_timestamps: bool = False,
    language: str | None = None,
    task: str | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    prompt_ids: Sequence[int] = (),
    check: bool = True,
) -> SpeculativeOutput:
    """Teacher-greedy token ids for a batch of ≤ 30 s features, drafted by ``assistant``.

    The sequences equal :func:`~distilray.inference.shortform.generate_greedy`'s
    (generated tokens, no prompt, no end of text); the counters tell how many
    drafts were accepted and how many teacher passes it took. ``schedule``
    "constant" drafts ``num_draft_tokens`` every round; "heuristic" (transformers'
    default for assisted generation) starts there, drafts 2 more after a round in
    which every draft was accepted and 1 fewer otherwise (between 1 and 16).
    ``encoder_hidden_states`` (the teacher encoder's output for these features)
    skips the encoder pass when the caller already has it. ``prompt_ids``
    (``<|startofprev|>`` + text) condition both decoders as Whisper's initial prompt,
    exactly as ``generate(prompt_ids=...)`` conditions the teacher; each row's
    prompt (:attr:`SpeculativeOutput.prompts`) then starts with them. ``check=False`` skips the
    checks of the settings (a :class:`~distilray.inference.decoder.SpeculativeDecoder`
    made them once, in its constructor).
    """
    if check:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        check_assistant(teacher, assistant)
    with torch.inference_mode():
        features = to_model(teacher, input_features)
        encoded = encoder_hidden_states
        if encoded is None:
            encoded = encode(teacher, features)
        setup = prepare_decoding(
            teacher,
            features,
            encoder_hidden_states=encoded,
            max_new_tokens=max_new_tokens,
            return_timestamps=return_timestamps,
            language=language,
            task=task,
            prompt_ids=prompt_ids,
        )
        loop = _SpeculativeLoop(teacher, assistant, encoded, setup, num_draft_tokens)
        loop.heuristic = schedule == "heuristic"
        return loop.run()


class _SpeculativeLoop:
    """The draft / verify rounds over one batch (see :func:`speculative_generate`)."""

    def __init__(
        self, teacher, assistant, encoded, setup: DecodingSetup, k: int, keep_scores: bool = False
    ):
        pad = teacher.generation_config.pad_token_id
        self.setup = setup
        self.keep_scores = keep_scores  # keep each emitted token's processed teacher scores
        self.k = max(0, k)
        self.heuristic = False  # adapt k to the acceptance of the last round
        self.max_positions = min(
            teacher.config.max_target_positions, assistant.config.max_target_positions
        )
        self.teacher = RaggedDecoder(teacher, encoded, pad)
        student_states = encoded.to(dtype=assistant.dtype, device=assistant.device)
        self.student = RaggedDecoder(assistant, student_states, pad)
        self.rows = [_Row(prompt=p) for p in setup.prompt.tolist()]
        self.active = list(range(len(self.rows)))  # batch position -> row index

    def run(self) -> SpeculativeOutput:
        self._prefill()
        while self.active:
            self._round()
            self._drop_finished()
        total = SpeculativeStats(teacher_passes=self.teacher.forward_passes)
        total.student_passes = self.student.forward_passes
        out = []
        for row in self.rows:
            ids = row.generated
            total.drafted += row.stats.drafted
            total.accepted += row.stats.accepted
            total.generated += len(ids)
            row.stats.generated = len(ids)
            if ids and ids[-1] == self.setup.eos_token_id:
                ids = ids[:-1]
            out.append(ids)
        scores = [row.scores for row in self.rows] if self.keep_scores else None
        prompts = [row.prompt for row in self.rows]
        return SpeculativeOutput(out, total, [row.stats for row in self.rows], prompts, scores)

    def _prefill(self) -> None:
        """Teacher reads the prompt and picks the first token; the student reads the prompt."""
        prompts = [row.prompt for row in self.rows]
        logits = self.teacher.forward(prompts)[:, -1]
        firsts, scores = self._pick(prompts, logits)
        for i, (row, token) in enumerate(zip(self.rows, firsts, strict=True)):
            row.student_todo = row.prompt + [token]
            self._emit(row, [token])
            if self.keep_scores:
                row.scores.append(scores[i])
        self._drop_finished()

    def _pick(self, prefixes, logits):
        """The teacher's greedy tokens, and (with keep_scores) their processed scores."""
        if self.keep_scores:
            return greedy_tokens(self.setup.processors, prefixes, logits, return_scores=True)
        return greedy_tokens(self.setup.processors, prefixes, logits), None

    def _draft_length(self) -> int:
        """Drafts this round: ``k``, fewer near the position limit of the decoders."""
        longest = max(len(self.rows[r].prefix) for r in self.active)
        # The last draft sits at position len(prefix) - 1 + k and must exist.
        return max(0, min(self.k, self.max_positions - longest))

    def _draft(self, k: int) -> list[list[int]]:
        """``k`` greedy student tokens per active row."""
        rows = [self.rows[r] for r in self.active]
        drafts: list[list[int]] = [[] for _ in rows]
        inputs = [row.student_todo for row in rows]
        for _ in range(k):
            logits = self.student.forward(inputs)[:, -1]
            prefixes = [row.prefix + d for row, d in zip(rows, drafts, strict=True)]
            tokens = greedy_tokens(self.setup.processors, prefixes, logits)
            for d, t in zip(drafts, tokens, strict=True):
                d.append(t)
            inputs = [[t] for t in tokens]
        for row, d in zip(rows, drafts, strict=True):
            # The student has now seen its todo list and every draft but the last.
            row.student_todo = d[-1:] if d else row.student_todo
        return drafts

    def _round(self) -> None:
        k = self._draft_length()
        drafts = self._draft(k)
        rows = [self.rows[r] for r in self.active]
        inputs = [row.generated[-1:] + d for row, d in zip(rows, drafts, strict=True)]
        logits = self.teacher.forward(inputs)
        prefixes, where = [], []
        for i, (row, d) in enumerate(zip(rows, drafts, strict=True)):
            for j in range(k + 1):
                prefixes.append(row.prefix + d[:j])
                where.append((i, j))
        choices, scores = self._pick(prefixes, logits[[i for i, _ in where], [j for _, j in where]])
        picks = [choices[i * (k + 1) : (i + 1) * (k + 1)] for i in range(len(rows))]
        teacher_drop, student_drop = [], []
        for i, (row, d, pick) in enumerate(zip(rows, drafts, picks, strict=True)):
            n = _agreeing_prefix(d, pick)
            emitted = self._emit(row, d[:n] + [pick[n]])
            if self.keep_scores:
                row.scores.extend(scores[i * (k + 1) : i * (k + 1) + emitted])
            # Drafts past an accepted end of text (or the budget) were never needed.
            row.stats.drafted += min(k, emitted)
            row.stats.accepted += min(n, emitted)
            row.stats.teacher_passes += 1
            row.stats.student_passes += k
            teacher_drop.append(k - n)
            # The student saw drafts 1..k-1: keep those accepted, feed what it lacks next.
            student_drop.append(max(0, (k - 1) - n))
            if k and n < k:
                row.student_todo = []
            row.student_todo = row.student_todo + [pick[n]]
        if self.heuristic and k:
            all_accepted = not any(teacher_drop)
            self.k = min(self.k + 2, MAX_DRAFT_TOKENS) if all_accepted else max(1, self.k - 1)
        self.teacher.invalidate_last(teacher_drop)
        self.student.invalidate_last(student_drop)
        self.teacher.compact(slack=COMPACT_SLACK)
        self.student.compact(slack=COMPACT_SLACK)

    def _emit(self, row: _Row, tokens: list[int]) -> int:
        """Append tokens to a row, stopping at end of text or the token budget; count them."""
        for count, token in enumerate(tokens, start=1):
            row.generated.append(token)
            if token == self.setup.eos_token_id or len(row.generated) >= self.setup.max_new_tokens:
                row.done = True
                return count
        return len(tokens)

    def _drop_finished(self) -> None:
        keep = [i for i, r in enumerate(self.active) if not self.rows[r].done]
        if len(keep) == len(self.active):
            return
        self.active = [self.active[i] for i in keep]
        if self.active:
            index = torch.tensor(keep)
            self.teacher.select_rows(index)
            self.student.select_rows(index)


def _agreeing_prefix(drafts: list[int], picks: list[int]) -> int:
    """How many leading drafts equal the teacher's picks at the same positions."""
    n = 0
    while n < len(drafts) and drafts[n] == picks[n]:
        n += 1
    return n
