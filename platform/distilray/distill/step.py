"""Pure training and evaluation steps: no Ray, no I/O, one batch in, numbers out.

The student's encoder is the teacher's, frozen, so one encoder pass per batch serves
both decoders (:func:`shared_logits`). :func:`naive_logits` runs each model whole,
as a straightforward implementation would; it exists for the benchmark.

A training step projects onto the vocabulary only the decoder states that carry a
label (:class:`StudentHead`): in a batch of mixed clip lengths most positions are
padding, and the ``d_model x vocab`` projection, the softmaxes of the loss and their
backward pass are most of a step's cost on a small decoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from distilray.distill.deviations import label_deviations
from distilray.distill.encoder_cache import EncoderCache
from distilray.distill.losses import (
    IGNORE_INDEX,
    DistillationLoss,
    attention_loss,
    hidden_state_loss,
    masked_kl,
)
from distilray.distill.on_policy import (
    OnPolicy,
    pad_to,
    student_rollouts,
    synthetic_loops,
    unlikelihood,
)
from distilray.inference.words import eager_attention
from distilray.text import WerStats, corpus_wer


class Decoded(NamedTuple):
    """What :func:`decode_at` returns."""

    logits: torch.Tensor  # (n, vocab) at the chosen positions
    hidden_states: tuple[torch.Tensor, ...] | None  # embeddings, then each layer's output
    cross_attentions: tuple[torch.Tensor, ...] | None  # per layer (batch, heads, seq, frames)
    cross_kv: list[CrossKV] | None = None  # per layer, when ``keep_cross_kv`` asked for them


class CrossKV(NamedTuple):
    """One decoder layer's cross-attention keys and values over the audio frames,
    each ``(batch, heads, frames, head_dim)``."""

    keys: torch.Tensor
    values: torch.Tensor

    def rows(self, index: torch.Tensor) -> CrossKV:
        return CrossKV(self.keys[index], self.values[index])


@dataclass(frozen=True)
class AttentionAlignment:
    """Which cross-attention layers of student and teacher should agree, and how much."""

    pairs: list[tuple[int, int]]  # (student layer, teacher layer it was copied from)
    weight: float  # of the mean per-head KL between their attention over encoder frames


@dataclass(frozen=True)
class HiddenAlignment:
    """Which decoder hidden states of student and teacher should agree, and how much."""

    pairs: list[tuple[int, int]]  # (student, teacher) indices into decoder_hidden_states
    weight: float  # of the relative mean squared error in the loss


class StudentHead(nn.Module):
    """The trainable student as DistributedDataParallel wraps it: decoder and output
    projection over given encoder states, with logits only at chosen positions.

    ``forward`` must be the wrapper's for DDP to synchronise gradients, so the whole
    student decoding lives here rather than in a function that reaches inside it.
    """

    def __init__(self, whisper: nn.Module):
        super().__init__()
        self.whisper = whisper

    def forward(
        self,
        encoder_states: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
        positions: torch.Tensor,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        cross_kv: list[CrossKV] | None = None,
    ) -> Decoded:
        return decode_at(
            self.whisper,
            encoder_states,
            decoder_input_ids,
            decoder_attention_mask,
            positions,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            cross_kv=cross_kv,
        )


def decode_at(
    model: nn.Module,
    encoder_states: torch.Tensor,
    decoder_input_ids: torch.Tensor,
    decoder_attention_mask: torch.Tensor,
    positions: torch.Tensor,
    *,
    output_hidden_states: bool = False,
    output_attentions: bool = False,
    cross_kv: list[CrossKV] | None = None,
    keep_cross_kv: bool = False,
) -> Decoded:
    """Teacher-forced logits ``(n, vocab)`` at the ``n`` True ``positions`` of a
    ``(batch, seq)`` mask, and (when asked) the decoder's hidden states and
    cross-attention weights (computed with eager attention, the one that returns them).

    The same numbers as ``model(encoder_outputs=..., ...).logits[positions]``, without
    projecting the positions no loss reads.

    ``cross_kv`` gives each layer's cross-attention keys and values instead of
    computing them from ``encoder_states`` (their projections over the 1,500 frames of
    a window are a quarter of a tiny decoder's step); ``keep_cross_kv`` returns the
    ones computed here. Both go through transformers' encoder-decoder cache, the way
    ``generate`` reuses them from one token to the next.
    """
    cache = None
    if cross_kv is not None or keep_cross_kv:
        cross = DynamicCache()
        for layer, kv in enumerate(cross_kv or ()):
            cross.update(kv.keys, kv.values, layer)
        cache = EncoderDecoderCache(DynamicCache(), cross)
    with eager_attention(model, output_attentions):
        out = model.model.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_states,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            past_key_values=cache,
            use_cache=cache is not None,  # teacher forcing: no other use for a cache
        )
    logits = model.proj_out(out.last_hidden_state[positions])
    kept = None
    if keep_cross_kv:
        kept = [CrossKV(la.keys, la.values) for la in cache.cross_attention_cache.layers]
    return Decoded(
        logits,
        out.hidden_states if output_hidden_states else None,
        out.cross_attentions if output_attentions else None,
        kept,
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The Whisper model inside a DistributedDataParallel wrapper and/or a
    :class:`StudentHead` (or the model itself)."""
    model = getattr(model, "module", model)
    return model.whisper if isinstance(model, StudentHead) else model


def _head(student: nn.Module) -> nn.Module:
    """``student`` as a :class:`StudentHead` (already one, possibly inside DDP, or wrapped)."""
    inner = getattr(student, "module", student)
    return student if isinstance(inner, StudentHead) else StudentHead(student)


def _encode(
    student: nn.Module, batch: dict[str, torch.Tensor], encoder_cache: EncoderCache | None
) -> torch.Tensor:
    """The frozen encoder's output for the batch (from the cache where it has it).

    Rows marked in ``batch["augmented"]`` (:mod:`.augment`) carry perturbed features:
    they are always encoded afresh.
    """
    with torch.no_grad():
        encoder = unwrap(student).model.encoder
        features = batch["input_features"]
        if encoder_cache is None or "ids" not in batch:
            return encoder(features).last_hidden_state
        augmented = batch.get("augmented")
        if augmented is None or not augmented.any():
            return encoder_cache.encode(encoder, features, batch["ids"])
        fresh = augmented.to(features.device)
        states = encoder(features[fresh]).last_hidden_state
        out = states.new_empty((features.shape[0], *states.shape[1:]))
        out[fresh] = states
        if not fresh.all():
            kept = (~fresh).nonzero().flatten().tolist()
            ids = [batch["ids"][i] for i in kept]
            out[~fresh] = encoder_cache.encode(encoder, features[~fresh], ids)
        return out


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on ``device`` when ``dtype`` is given, else a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _decoder_kwargs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "decoder_input_ids": batch["decoder_input_ids"],
        "decoder_attention_mask": batch["decoder_attention_mask"],
        "use_cache": False,  # teacher forcing: no key/value cache to build
    }


def shared_logits(
    student: nn.Module,
    teacher: nn.Module,
    batch: dict[str, torch.Tensor],
    encoder_cache: EncoderCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits ``(batch, seq, vocab)`` from ONE encoder pass.

    The frozen student encoder (a copy of the teacher's) encodes the features once
    without autograd; both decoders attend to that same output. With an
    ``encoder_cache`` (and row ``ids`` in the batch) rows encoded in an earlier epoch
    are not encoded again.
    """
    student_out, teacher_out = shared_outputs(student, teacher, batch, encoder_cache)
    return student_out.logits, teacher_out.logits


def shared_outputs(
    student: nn.Module,
    teacher: nn.Module,
    batch: dict[str, torch.Tensor],
    encoder_cache: EncoderCache | None = None,
    *,
    hidden_states: bool = False,
):
    """The two models' outputs (:func:`shared_logits`), with the decoders' hidden
    states when ``hidden_states``."""
    student = unwrap(student)
    hidden = _encode(student, batch, encoder_cache)
    with torch.no_grad():
        teacher_out = teacher(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden.to(teacher.dtype)),
            output_hidden_states=hidden_states,
            **_decoder_kwargs(batch),
        )
    student_out = student(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
        output_hidden_states=hidden_states,
        **_decoder_kwargs(batch),
    )
    return student_out, teacher_out


def naive_logits(
    student: nn.Module, teacher: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same logits with each model running its own encoder (two encoder passes)."""
    with torch.no_grad():
        teacher_out = teacher(
            input_features=batch["input_features"].to(teacher.dtype), **_decoder_kwargs(batch)
        )
    student_out = student(input_features=batch["input_features"], **_decoder_kwargs(batch))
    return student_out.logits, teacher_out.logits


def _append_rows(
    ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, added: list, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's decoder inputs, mask and scored positions with the rows of each of
    ``added`` (:class:`~distilray.distill.on_policy.Rollouts`) below them, padded alike."""
    width = max(ids.shape[1], *(part.input_ids.shape[1] for part in added))
    return (
        torch.cat(
            [pad_to(ids, width, eos_id), *(pad_to(p.input_ids, width, eos_id) for p in added)]
        ),
        torch.cat(
            [
                pad_to(mask, width, 0),
                *(pad_to(p.attention_mask.to(mask.dtype), width, 0) for p in added),
            ]
        ),
        torch.cat(
            [pad_to(positions, width, False), *(pad_to(p.positions, width, False) for p in added)]
        ),
    )


def train_step(
    student: nn.Module,
    teacher: nn.Module,
    loss_fn: DistillationLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: dict[str, torch.Tensor],
    *,
    max_grad_norm: float | None = 1.0,
    amp_dtype: torch.dtype | None = None,
    share_encoder: bool = True,
    encoder_cache: EncoderCache | None = None,
    hidden: HiddenAlignment | None = None,
    on_policy: OnPolicy | None = None,
    attention: AttentionAlignment | None = None,
    shared_cross_kv: Sequence[int] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """One optimizer step on ``batch``; returns ``loss``, ``kl``, ``ce``, ``grad_norm``, ``lr``
    (``hidden``, the hidden-state term, when ``hidden`` aligns layers; ``on_policy_kl``
    when ``on_policy`` adds the KL on the student's own transcripts and ``repetition``
    when it adds the unlikelihood of their surplus repeats, :mod:`.on_policy`;
    ``deviation_kl`` when it adds the KL on labels with slips, :mod:`.deviations`;
    ``attention``, the cross-attention term, when ``attention`` aligns layers).
    ``seed`` draws the loops of ``on_policy.synthetic``. ``shared_cross_kv`` names, per
    student decoder layer, the teacher layer whose cross-attention keys and values it
    reads instead of computing its own: right only while the student's key/value
    projections are frozen copies of those layers' (``model.freeze_cross_attention_kv``)."""
    device = batch["input_features"].device
    extra: dict[str, float] = {}
    labels = batch["labels"]
    aligned = (
        hidden is not None
        or on_policy is not None
        or attention is not None
        or shared_cross_kv is not None
    )
    if aligned and not share_encoder:
        raise ValueError(
            "hidden-state, attention and on-policy terms and shared cross-attention keys "
            "need the shared encoder pass"
        )
    if share_encoder:
        positions = labels != IGNORE_INDEX
        labelled = positions
        with autocast(device, amp_dtype):
            states = _encode(student, batch, encoder_cache)
            ids, mask = batch["decoder_input_ids"], batch["decoder_attention_mask"]
            rolled = deviated = None
            if on_policy is not None and on_policy.rolls:
                rolled = (
                    synthetic_loops(ids, labels, on_policy, seed)
                    if on_policy.synthetic
                    else student_rollouts(unwrap(student), states, ids, labels, on_policy)
                )
                if rolled is not None and on_policy.weight == 0:
                    # the repetition term alone reads the surplus tokens' logits only
                    rolled = rolled.surplus_only()
            if on_policy is not None and on_policy.deviation_weight > 0:
                deviated = label_deviations(ids, labels, on_policy, seed)
            added = [part for part in (deviated, rolled) if part is not None]
            if added:  # one batch: the rows as labelled, with slips, then as the student wrote
                ids, mask, positions = _append_rows(ids, mask, positions, added, on_policy.eos_id)
                labelled = positions.clone()
                labelled[labels.shape[0] :] = False
                added_rows = torch.cat([part.rows for part in added])
                states = torch.cat([states, states[added_rows]])
            # the teacher reads the rows with slips, and the student's own sequences only
            # for the on-policy KL
            rows = len(labels) + (0 if deviated is None else len(deviated.rows))
            if rolled is not None and on_policy.weight > 0:
                rows = len(ids)
            with torch.no_grad():
                teacher_logits, teacher_hidden, teacher_attn, teacher_kv = decode_at(
                    teacher,
                    states[:rows].to(teacher.dtype),
                    ids[:rows],
                    mask[:rows],
                    positions[:rows],
                    output_hidden_states=hidden is not None,
                    output_attentions=attention is not None,
                    keep_cross_kv=shared_cross_kv is not None,
                )
            student_kv = None
            if shared_cross_kv is not None:
                # the student's rows are the batch's, then copies of some (the loops)
                source = torch.arange(len(ids), device=states.device)
                if added:
                    source[len(labels) :] = added_rows.to(states.device)
                student_kv = [teacher_kv[layer].rows(source) for layer in shared_cross_kv]
                if amp_dtype is None:  # a bf16 teacher beside a float32 student, no autocast
                    dtype = unwrap(student).dtype
                    student_kv = [CrossKV(k.to(dtype), v.to(dtype)) for k, v in student_kv]
            student_logits, student_hidden, student_attn, _ = _head(student)(
                states, ids, mask, positions, hidden is not None, attention is not None, student_kv
            )
            if rows < len(ids):  # the alignment terms compare the labelled rows only
                student_hidden = student_hidden and tuple(h[:rows] for h in student_hidden)
                student_attn = student_attn and tuple(a[:rows] for a in student_attn)
                labelled = labelled[:rows]
        # (n, vocab) logits of the labelled positions: one row of n for the loss
        n = int(labelled.sum())
        slips = 0 if deviated is None else int(deviated.positions.sum())
        out = loss_fn(
            student_logits[None, :n], teacher_logits[None, :n], labels[labels != IGNORE_INDEX][None]
        )
    else:
        with autocast(device, amp_dtype):
            student_logits, teacher_logits = naive_logits(unwrap(student), teacher, batch)
        out = loss_fn(student_logits, teacher_logits, labels)
    total = out.loss
    if share_encoder and on_policy is not None and rolled is None and on_policy.repetition_weight:
        extra["repetition"] = 0.0  # no surplus repeats in this batch's transcripts
    if share_encoder and deviated is not None:
        t = loss_fn.temperature
        own = student_logits[None, n : n + slips]
        term = masked_kl(
            own,
            teacher_logits[None, n : n + slips],
            torch.ones(own.shape[:2], dtype=torch.bool, device=own.device),
            t,
        )
        total = total + on_policy.deviation_weight * term * t * t
        extra["deviation_kl"] = (term * t * t).item()
    if share_encoder and rolled is not None:
        own = student_logits[None, n + slips :]
        if on_policy.weight > 0:
            t = loss_fn.temperature
            term = masked_kl(
                own,
                teacher_logits[None, n + slips :],
                torch.ones(own.shape[:2], dtype=torch.bool, device=own.device),
                t,
            )
            total = total + on_policy.weight * term * t * t
            extra["on_policy_kl"] = (term * t * t).item()
        if on_policy.repetition_weight > 0:
            # rows of `own` follow the rollouts' scored positions in row-major order
            term = unlikelihood(
                own[0],
                rolled.targets[rolled.positions],
                rolled.excess[rolled.positions],
                rolled.scored,
            )
            total = total + on_policy.repetition_weight * term
            extra["repetition"] = term.item()
    if hidden is not None:
        term = hidden_state_loss(student_hidden, teacher_hidden, hidden.pairs, labelled)
        total = total + hidden.weight * term
        extra["hidden"] = term.item()
    if attention is not None:
        term = attention_loss(student_attn, teacher_attn, attention.pairs, labelled)
        total = total + attention.weight * term
        extra["attention"] = term.item()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    params = [p for p in student.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf"))
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return {
        "loss": total.item(),
        "kl": out.kl.item(),
        "ce": out.ce.item(),
        "grad_norm": float(norm),
        "lr": lr,
        **extra,
    }


def eval_step(
    model: nn.Module,
    processor,
    audios: Sequence[np.ndarray],
    references: Sequence[str],
    *,
    max_new_tokens: int = 128,
) -> WerStats:
    """Greedy-decode ``audios`` with ``model`` and count word errors against ``references``."""
    from distilray.inference.decoder import GreedyDecoder

    hyps = GreedyDecoder(model, processor, max_new_tokens=max_new_tokens).transcribe(list(audios))
    return corpus_wer(list(references), hyps)
