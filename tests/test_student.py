"""Student initialisation: layer choice (table) and weights copied from the teacher."""

from __future__ import annotations

import json

import pytest
import torch

from distilray.errors import ConfigError
from distilray.student import (
    INIT_INFO_FILE,
    StudentInitConfig,
    init_student,
    resolve_layer_ids,
    select_layers,
    weight_sources,
)


@pytest.mark.parametrize(
    ("n_teacher", "n_student", "expected"),
    [
        (32, 2, [0, 31]),  # distil-large-v3
        (4, 2, [0, 3]),  # tiny.en
        (32, 4, [0, 10, 20, 31]),  # linspace 0, 10.33, 20.67, 31 truncated, as the reference
        (24, 2, [0, 23]),
        (12, 3, [0, 5, 11]),
        (6, 6, [0, 1, 2, 3, 4, 5]),
        (4, 1, [3]),  # one layer: the reference keeps the last
        (1, 1, [0]),
    ],
)
def test_select_layers(n_teacher, n_student, expected):
    assert select_layers(n_teacher, n_student) == expected


@pytest.mark.parametrize(("n_teacher", "n_student"), [(4, 0), (4, 5), (0, 1)])
def test_select_layers_rejects_impossible_counts(n_teacher, n_student):
    with pytest.raises(ConfigError):
        select_layers(n_teacher, n_student)


def test_explicit_layer_ids():
    assert resolve_layer_ids(32, None, [0, -1]) == [0, 31]
    assert resolve_layer_ids(4, 2, [1, 2]) == [1, 2]
    for bad in ([0, 4], [1, 1], [], [-5]):
        with pytest.raises(ConfigError):
            resolve_layer_ids(4, None, bad)
    with pytest.raises(ConfigError):
        resolve_layer_ids(4, 3, [0, 3])


def test_weight_sources_maps_decoder_layers_only():
    keys = [
        "model.encoder.layers.3.fc1.weight",
        "model.decoder.layers.0.fc1.weight",
        "model.decoder.layers.1.self_attn.k_proj.weight",
        "model.decoder.embed_tokens.weight",
        "model.decoder.layer_norm.bias",
    ]
    assert weight_sources(keys, [0, 31]) == {
        "model.encoder.layers.3.fc1.weight": "model.encoder.layers.3.fc1.weight",
        "model.decoder.layers.0.fc1.weight": "model.decoder.layers.0.fc1.weight",
        "model.decoder.layers.1.self_attn.k_proj.weight": "model.decoder.layers.31.self_attn.k_proj.weight",
        "model.decoder.embed_tokens.weight": "model.decoder.embed_tokens.weight",
        "model.decoder.layer_norm.bias": "model.decoder.layer_norm.bias",
    }


def _params(module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict())


def test_every_student_weight_equals_its_teacher_source(tiny_random, tmp_path):
    from distilray.models import load_whisper

    out = tmp_path / "student"
    info = init_student(StudentInitConfig(teacher=str(tiny_random), decoder_layers=2, out=str(out)))
    assert info.decoder_layer_ids == [0, 3]
    teacher, _ = load_whisper(str(tiny_random), dtype=torch.float32)
    student, processor = load_whisper(str(out), dtype=torch.float32)
    assert student.config.decoder_layers == 2
    assert student.config.encoder_layers == teacher.config.encoder_layers

    # Structural check, independent of weight_sources: module by module.
    pairs = [
        (student.model.encoder, teacher.model.encoder),
        (student.model.decoder.embed_tokens, teacher.model.decoder.embed_tokens),
        (student.model.decoder.embed_positions, teacher.model.decoder.embed_positions),
        (student.model.decoder.layer_norm, teacher.model.decoder.layer_norm),
        (student.model.decoder.layers[0], teacher.model.decoder.layers[0]),
        (student.model.decoder.layers[1], teacher.model.decoder.layers[3]),
    ]
    covered = 0
    for s_mod, t_mod in pairs:
        s_params, t_params = _params(s_mod), _params(t_mod)
        assert s_params.keys() == t_params.keys()
        for key in s_params:
            assert torch.equal(s_params[key], t_params[key]), key
        covered += len(s_params)
    # Every student tensor is covered (proj_out is tied to embed_tokens).
    assert torch.equal(student.proj_out.weight, teacher.model.decoder.embed_tokens.weight)
    assert covered == len([k for k in student.state_dict() if k != "proj_out.weight"])
    # The second decoder layer is not the teacher's second one.
    assert not torch.equal(
        student.model.decoder.layers[1].fc1.weight, teacher.model.decoder.layers[1].fc1.weight
    )

    # A normal model folder: processor, generation config and init info are saved.
    for name in ("config.json", "model.safetensors", "generation_config.json", INIT_INFO_FILE):
        assert (out / name).is_file(), name
    assert processor.feature_extractor.feature_size == student.config.num_mel_bins
    assert json.loads((out / INIT_INFO_FILE).read_text())["decoder_layer_ids"] == [0, 3]
    assert (
        student.generation_config.decoder_start_token_id
        == teacher.generation_config.decoder_start_token_id
    )
    assert (
        processor.tokenizer.decode([student.config.decoder_start_token_id])
        == "<|startoftranscript|>"
    )


def test_cli_init_student_with_explicit_layers(tiny_random, tmp_path, capsys):
    from distilray.cli import main

    out = tmp_path / "s"
    code = main(
        ["init-student", "--teacher", str(tiny_random), "--layers", "1", "-1", "--out", str(out)]
    )
    assert code == 0
    assert json.loads((out / INIT_INFO_FILE).read_text())["decoder_layer_ids"] == [1, 3]
    assert "decoder layers [1, 3]" in capsys.readouterr().out
    assert (
        main(
            [
                "init-student",
                "--teacher",
                str(tiny_random),
                "--decoder-layers",
                "9",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "between 1 and 4" in capsys.readouterr().err


def test_decoder_dropout_trains_the_decoder_only_and_leaves_evaluation_exact(tiny_random):
    from distilray.models import load_whisper
    from distilray.student.layers import set_decoder_dropout

    model, _ = load_whisper(tiny_random)
    torch.manual_seed(0)
    features = torch.randn(1, model.config.num_mel_bins, 3000)
    labels = torch.tensor([[50257, 50362, 464, 3797, 318, 50256]])
    with torch.no_grad():
        plain = model(input_features=features, decoder_input_ids=labels).logits
    set_decoder_dropout(model, 0.3)
    model.train()
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state
        again = model.model.encoder(features).last_hidden_state
        a = model(encoder_outputs=(encoded,), decoder_input_ids=labels).logits
        b = model(encoder_outputs=(encoded,), decoder_input_ids=labels).logits
    assert torch.equal(encoded, again)  # the frozen, shared encoder stays deterministic
    assert not torch.allclose(a, b)  # the decoder drops units in training
    assert model.config.dropout == 0.0  # a saved student does not inherit the rate
    model.eval()
    with torch.no_grad():
        assert torch.allclose(
            model(input_features=features, decoder_input_ids=labels).logits, plain, atol=1e-6
        )
    with pytest.raises(ConfigError, match="dropout"):
        set_decoder_dropout(model, 1.0)


def test_export_keeps_the_students_own_alignment_heads(tiny_random, tmp_path):
    """Init maps the teacher's heads to the student's layer numbers once; export keeps
    them (mapping them again read student layer 2 as teacher layer 2 and dropped it),
    and only repairs heads written in the teacher's numbering."""
    from distilray.models import load_whisper
    from distilray.student import keep_alignment_heads

    teacher, _ = load_whisper(str(tiny_random), dtype=torch.float32)
    heads = teacher.generation_config.alignment_heads
    assert {layer for layer, _ in heads} == {2, 3}  # the teacher's upper half
    out = tmp_path / "student"
    init_student(StudentInitConfig(teacher=str(tiny_random), decoder_layers=3, out=str(out)))
    student, _ = load_whisper(str(out), dtype=torch.float32)
    layer_ids = json.loads((out / INIT_INFO_FILE).read_text())["decoder_layer_ids"]
    assert layer_ids == [0, 1, 3]
    own = [[2, h] for layer, h in heads if layer == 3]  # teacher layer 3 is student layer 2
    assert student.generation_config.alignment_heads == own
    keep_alignment_heads(student, layer_ids)  # what export does with the trained student
    assert student.generation_config.alignment_heads == own
    student.generation_config.alignment_heads = heads  # teacher numbering: layer 3 is absent
    keep_alignment_heads(student, layer_ids)
    assert student.generation_config.alignment_heads == own
