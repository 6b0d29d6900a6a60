"""Which teacher layer each student layer comes from, and what follows from that.

Pure functions: the maximally spaced layer choice, the student-to-teacher weight
map, the hidden states distillation aligns, and the alignment heads (word
timestamps) a student keeps.
"""

from __future__ import annotations

import re

import numpy as np

from distilray.errors import ConfigError

_DECODER_LAYER = re.compile(r"^model\.decoder\.layers\.(\d+)\.")


def select_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layer indices for ``n_student`` layers, maximally spaced, both ends included.

    Follows the Distil-Whisper reference: ``np.linspace(0, n - 1, k)`` truncated to
    integers, with the last entry forced to the teacher's last layer
    (32 → 2 gives ``[0, 31]``, 32 → 4 gives ``[0, 10, 20, 31]``).
    """
    if n_teacher < 1:
        raise ConfigError(f"the teacher has {n_teacher} layers; need at least 1")
    if not 1 <= n_student <= n_teacher:
        raise ConfigError(
            f"cannot take {n_student} decoder layers from a teacher with {n_teacher}: "
            f"choose between 1 and {n_teacher}"
        )
    ids = np.linspace(0, n_teacher - 1, n_student, dtype=int)
    ids[-1] = n_teacher - 1
    return [int(i) for i in ids]


def resolve_layer_ids(
    n_teacher: int, n_student: int | None = None, layer_ids: list[int] | None = None
) -> list[int]:
    """The teacher layers to copy: an explicit list (validated) or :func:`select_layers`."""
    if layer_ids is None:
        return select_layers(n_teacher, n_student if n_student is not None else 2)
    if n_student is not None and len(layer_ids) != n_student:
        raise ConfigError(
            f"decoder_layer_ids has {len(layer_ids)} entries but decoder_layers is {n_student}"
        )
    if not layer_ids:
        raise ConfigError("decoder_layer_ids is empty: list at least one teacher layer")
    resolved = []
    for i in layer_ids:
        if not -n_teacher <= i < n_teacher:
            raise ConfigError(
                f"decoder layer {i} does not exist: the teacher has layers 0..{n_teacher - 1}"
            )
        resolved.append(i % n_teacher)
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"decoder_layer_ids {layer_ids} name a layer twice")
    return resolved


def weight_sources(student_keys: list[str], layer_ids: list[int]) -> dict[str, str]:
    """Map each student state-dict key to the teacher key it is copied from.

    Student decoder layer ``i`` comes from teacher decoder layer ``layer_ids[i]``;
    every other weight (encoder, embeddings, final norms) has the same name in both.
    """

    def source(key: str) -> str:
        match = _DECODER_LAYER.match(key)
        if not match:
            return key
        teacher_layer = layer_ids[int(match.group(1))]
        return f"model.decoder.layers.{teacher_layer}." + key[match.end() :]

    return {key: source(key) for key in student_keys}


def hidden_pairs(layer_ids: list[int], teacher_layers: int) -> list[tuple[int, int]]:
    """``(student, teacher)`` indices of decoder hidden states that should agree.

    Student layer ``k`` is a copy of teacher layer ``layer_ids[k]``, so its output is
    what the next copied layer expects as input: the teacher's hidden state entering
    layer ``layer_ids[k + 1]``. Indices are into ``decoder_hidden_states`` (0 is the
    embedding output, ``i`` the output of layer ``i - 1``); the last layer's output is
    left to the logits.

    >>> hidden_pairs([0, 3], 4)
    [(1, 3)]
    >>> hidden_pairs([0, 10, 21, 31], 32)
    [(1, 10), (2, 21), (3, 31)]
    """
    del teacher_layers  # the last student layer maps to the teacher's last: no pair
    return [(k + 1, layer_ids[k + 1]) for k in range(len(layer_ids) - 1)]


def student_alignment_heads(
    teacher_heads: list[list[int]] | None, layer_ids: list[int], heads_per_layer: int
) -> list[list[int]]:
    """Cross-attention heads for word timestamps, in the student's own layer numbers.

    A teacher head in a copied layer keeps its place (teacher layer ``layer_ids[i]``
    is student layer ``i``); when no teacher head survives, every head of the
    student's second half of layers, transformers' default.

    >>> student_alignment_heads([[1, 0], [2, 5], [3, 0], [3, 4]], [0, 3], 6)
    [[1, 0], [1, 4]]
    >>> student_alignment_heads([[1, 0], [2, 5]], [0, 3], 2)
    [[1, 0], [1, 1]]
    """
    where = {teacher: student for student, teacher in enumerate(layer_ids)}
    mapped = [
        [where[int(layer)], int(h)] for layer, h in teacher_heads or [] if int(layer) in where
    ]
    if mapped:
        return mapped
    n = len(layer_ids)
    return [[layer, h] for layer in range(n // 2, n) for h in range(heads_per_layer)]


def set_alignment_heads(model, layer_ids: list[int] | None) -> None:
    """Give a student valid ``alignment_heads`` (mapped from the teacher's it inherited).

    ``layer_ids``: the teacher layers it was built from (None: unknown, and heads that
    do not exist in the model are replaced by the default).
    """
    config = model.generation_config
    heads = getattr(config, "alignment_heads", None)
    n, per_layer = model.config.decoder_layers, model.config.decoder_attention_heads
    if layer_ids is not None and len(layer_ids) == n:
        config.alignment_heads = student_alignment_heads(heads, list(layer_ids), per_layer)
    elif not heads or any(not (0 <= int(a) < n and 0 <= int(b) < per_layer) for a, b in heads):
        config.alignment_heads = student_alignment_heads(None, list(range(n)), per_layer)


def keep_alignment_heads(model, layer_ids: list[int] | None) -> None:
    """Keep a trained student's own ``alignment_heads``, repairing only invalid ones.

    A distilled student's heads were mapped to its own layer numbers at init and travel
    with its checkpoints: mapping them again would read them as teacher layers (a head
    of student layer 2 is not one of teacher layer 2). Heads that name layers or heads
    the model lacks (a student initialised before init mapped them carries the
    teacher's numbering) are mapped from ``layer_ids`` as at init.
    """
    from distilray.inference.words import has_alignment_heads

    if not has_alignment_heads(model):
        set_alignment_heads(model, layer_ids)


def set_decoder_dropout(model, p: float) -> None:
    """Train ``model``'s decoder with dropout ``p`` (embeddings and residual branches).

    Sets the rate on the decoder's modules only, not in ``model.config``: the frozen
    encoder stays deterministic (its output is shared with the teacher and cached),
    and a saved student keeps the rate it was initialised with. Dropout acts only
    in train mode, so evaluation and export are unaffected.
    """
    if not 0 <= p < 1:
        raise ConfigError(f"decoder dropout must be in [0, 1), got {p}")
    decoder = model.model.decoder
    decoder.dropout = p
    for layer in decoder.layers:
        layer.dropout = p


def freeze_cross_attention_kv(model) -> None:
    """Freeze the key and value projections of every decoder layer's cross-attention
    (``model.freeze_cross_attention_kv``: they stay the copied teacher layers')."""
    for layer in model.model.decoder.layers:
        layer.encoder_attn.k_proj.requires_grad_(False)
        layer.encoder_attn.v_proj.requires_grad_(False)
