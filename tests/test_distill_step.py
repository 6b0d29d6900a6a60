"""Pure steps on a tiny random teacher: the shared encoder pass, one training step,
evaluation and a checkpoint round trip, all without Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distilray.distill.checkpoint import (
    TrainState,
    apply_train_state,
    load_student,
    read_train_state,
    save_checkpoint,
)
from distilray.distill.collate import pad_labels
from distilray.distill.config import OptimSection
from distilray.distill.losses import DistillationLoss
from distilray.distill.optim import build_optimizer
from distilray.distill.step import eval_step, naive_logits, shared_logits, train_step
from distilray.features import log_mel
from distilray.student import build_student, same_encoder


def _batch(processor, rows: int = 2) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    audios = [rng.normal(0, 0.05, 16000).astype(np.float32) for _ in range(rows)]
    seqs = [[50257, 50362, 400 + i, 500, 50256][: 3 + i] for i in range(rows)]
    return {
        "input_features": torch.from_numpy(log_mel(processor.feature_extractor, audios)),
        **pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=50257, max_tokens=448),
    }


def _step_on_copy(student, teacher, batch, **terms) -> dict[str, float]:
    """One ``train_step`` on a deep copy of ``student`` (the fixture's stays untouched),
    with the loss terms in ``terms`` (hidden=, attention=, on_policy=)."""
    import copy

    return _train_on(copy.deepcopy(student), teacher, batch, **terms)


def _train_on(student, teacher, batch, **terms) -> dict[str, float]:
    """One ``train_step`` on ``student`` itself, with the loss terms in ``terms``."""
    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=0), 10)
    return train_step(student, teacher, DistillationLoss(), optimizer, scheduler, batch, **terms)


def test_shared_encoder_pass_gives_the_same_logits(distill_models):
    student, teacher, processor = distill_models
    batch = _batch(processor)
    with torch.no_grad():
        shared = shared_logits(student, teacher, batch)
        naive = naive_logits(student, teacher, batch)
    for a, b in zip(shared, naive, strict=True):
        assert a.shape == (2, 3, teacher.config.vocab_size)
        torch.testing.assert_close(a, b)


def test_train_step_projects_only_labelled_positions_with_the_full_loss(distill_models):
    import copy

    from distilray.distill.step import StudentHead, decode_at, unwrap

    student, teacher, processor = distill_models
    student = copy.deepcopy(student)
    batch = _batch(processor, rows=3)  # 3, 4 and 5 tokens: the shorter rows are padded
    positions = batch["labels"] != -100
    assert positions.sum() < positions.numel()
    with torch.no_grad():
        full_student, full_teacher = shared_logits(student, teacher, batch)
        want = DistillationLoss()(full_student, full_teacher, batch["labels"])
        states = student.model.encoder(batch["input_features"]).last_hidden_state
        head = StudentHead(student)
        got = head(
            states, batch["decoder_input_ids"], batch["decoder_attention_mask"], positions
        ).logits
        teacher_at = decode_at(
            teacher,
            states,
            batch["decoder_input_ids"],
            batch["decoder_attention_mask"],
            positions,
        ).logits
    assert unwrap(head) is student
    torch.testing.assert_close(got, full_student[positions])
    torch.testing.assert_close(teacher_at, full_teacher[positions])
    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=0), 10)
    metrics = train_step(student, teacher, DistillationLoss(), optimizer, scheduler, batch)
    assert metrics["loss"] == pytest.approx(want.loss.item(), rel=1e-5)
    assert metrics["kl"] == pytest.approx(want.kl.item(), rel=1e-5)
    assert metrics["ce"] == pytest.approx(want.ce.item(), rel=1e-5)


def test_encoder_cache_serves_later_epochs_with_the_same_logits(distill_models):
    from distilray.distill.encoder_cache import EncoderCache

    student, teacher, processor = distill_models
    batch = {**_batch(processor, rows=3), "ids": ["a", "b", "c"]}
    cache = EncoderCache(max_bytes=2**30)
    with torch.no_grad():
        want = shared_logits(student, teacher, batch)
        first = shared_logits(student, teacher, batch, cache)
        assert (cache.hits, cache.misses, len(cache)) == (0, 3, 3)
        # a later epoch: other order, one new row; the cached rows skip the encoder
        reordered = {k: v[[2, 0]] for k, v in batch.items() if torch.is_tensor(v)}
        again = shared_logits(student, teacher, {**reordered, "ids": ["c", "a"]}, cache)
    assert (cache.hits, cache.misses) == (2, 3)
    for a, b in zip(first, want, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(again, want, strict=True):
        torch.testing.assert_close(a, b[[2, 0]])


def test_encoder_cache_stays_within_its_budget(distill_models):
    from distilray.distill.encoder_cache import EncoderCache

    student, _, processor = distill_models
    batch = _batch(processor, rows=3)
    encoder = student.model.encoder
    with torch.no_grad():
        one_row = encoder(batch["input_features"][:1]).last_hidden_state
        cache = EncoderCache(max_bytes=one_row.numel() * one_row.element_size())
        out = cache.encode(encoder, batch["input_features"], ["a", "b", "c"])
    assert out.shape[0] == 3 and len(cache) == 1 and cache.used_bytes <= cache.max_bytes
    with pytest.raises(ValueError, match="2 ids for a batch of 3"):
        cache.encode(encoder, batch["input_features"], ["a", "b"])


def test_encoder_cache_on_disk_serves_a_new_run_and_keys_by_content(distill_models, tmp_path):
    from distilray.distill.encoder_cache import EncoderCache
    from distilray.models.encoder_store import EncoderStore

    student, teacher, processor = distill_models
    batch = {**_batch(processor, rows=3), "ids": ["a", "b", "c"]}
    one, two = EncoderStore(tmp_path, "teacher-1"), EncoderStore(tmp_path, "teacher-2")
    with torch.no_grad():
        want = shared_logits(student, teacher, batch)
        shared_logits(student, teacher, batch, EncoderCache(2**30, one))
        assert len(list(tmp_path.glob("*.npy"))) == 3
        # a new run (empty memory), no memory budget at all: every row comes from disk
        rerun = EncoderCache(0, one)
        got = shared_logits(student, teacher, batch, rerun)
        assert (rerun.disk_hits, rerun.misses, len(rerun)) == (3, 0, 0)
        # the same ids on other audio, or another encoder, are not served from disk
        other = {**batch, "input_features": batch["input_features"].flip(0)}
        moved = EncoderCache(0, one)
        shared_logits(student, teacher, {**other, "ids": ["a", "x", "y"]}, moved)
        assert moved.disk_hits == 3  # same rows (by content) under other ids
        fresh = EncoderCache(0, two)
        shared_logits(student, teacher, batch, fresh)
        assert (fresh.disk_hits, fresh.misses) == (0, 3)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_train_step_with_hidden_alignment_reports_and_uses_the_term(distill_models):
    from distilray.distill.step import HiddenAlignment

    student, teacher, processor = distill_models
    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=0), 10)
    batch = _batch(processor)
    plain = train_step(student, teacher, DistillationLoss(), optimizer, scheduler, batch)
    aligned = train_step(
        student,
        teacher,
        DistillationLoss(),
        optimizer,
        scheduler,
        batch,
        hidden=HiddenAlignment([(1, 3)], weight=2.0),
    )
    assert "hidden" not in plain and aligned["hidden"] > 0
    # the total includes the weighted hidden term on top of the KL and CE terms
    assert aligned["loss"] == pytest.approx(
        0.8 * aligned["kl"] + aligned["ce"] + 2.0 * aligned["hidden"], rel=1e-4
    )


def test_attention_term_is_the_per_head_kl_of_the_copied_layers_attention(distill_models):

    from distilray.distill.losses import attention_loss
    from distilray.distill.step import AttentionAlignment

    student, teacher, processor = distill_models
    batch = _batch(processor, rows=3)
    mask = batch["labels"] != -100
    with torch.no_grad():
        states = teacher.model.encoder(batch["input_features"]).last_hidden_state
        saved = teacher.config._attn_implementation
        teacher.config._attn_implementation = "eager"
        try:
            full = teacher(
                encoder_outputs=(states,),
                decoder_input_ids=batch["decoder_input_ids"],
                decoder_attention_mask=batch["decoder_attention_mask"],
                output_attentions=True,
            ).cross_attentions
        finally:
            teacher.config._attn_implementation = saved
    assert full[3].shape[:2] == (3, teacher.config.decoder_attention_heads)
    # identical attention: no loss; a layer against another: a positive one
    assert float(attention_loss(full, full, [(0, 0), (3, 3)], mask)) == pytest.approx(0, abs=1e-6)
    p = full[3].transpose(1, 2)[mask]
    q = full[0].transpose(1, 2)[mask]
    want = (p * (p.log() - q.log())).sum(-1).mean()
    assert float(attention_loss(full, full, [(0, 3)], mask)) == pytest.approx(float(want), rel=1e-4)

    aligned = _step_on_copy(
        student, teacher, batch, attention=AttentionAlignment([(0, 0), (1, 3)], weight=2.0)
    )
    # the copied layers start with the teacher's attention only where their inputs agree
    assert aligned["attention"] > 0
    assert aligned["loss"] == pytest.approx(
        0.8 * aligned["kl"] + aligned["ce"] + 2.0 * aligned["attention"], rel=1e-4
    )
    # the models go back to the attention they were loaded with
    assert teacher.config._attn_implementation == saved
    assert student.config._attn_implementation == saved


def test_train_step_updates_decoder_only(distill_models):
    student, teacher, processor = distill_models
    encoder_before = {k: v.clone() for k, v in student.model.encoder.state_dict().items()}
    decoder_before = student.model.decoder.layers[1].fc1.weight.detach().clone()
    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=0), 10)
    metrics = train_step(
        student, teacher, DistillationLoss(), optimizer, scheduler, _batch(processor)
    )
    assert set(metrics) == {"loss", "kl", "ce", "grad_norm", "lr"}
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert metrics["loss"] == pytest.approx(0.8 * metrics["kl"] + metrics["ce"], rel=1e-5)
    for key, value in student.model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    assert not torch.equal(student.model.decoder.layers[1].fc1.weight, decoder_before)
    assert same_encoder(student, teacher)


def test_same_encoder_detects_a_different_encoder(distill_models):
    student, teacher, _ = distill_models
    other = build_student(teacher, [1, 2])
    assert same_encoder(other, teacher)
    with torch.no_grad():
        other.model.encoder.layers[0].fc1.weight.add_(1e-3)
    assert not same_encoder(other, teacher)


def test_eval_step_counts_words(distill_models):
    student, _, processor = distill_models
    rng = np.random.default_rng(1)
    audios = [rng.normal(0, 0.05, 16000).astype(np.float32) for _ in range(2)]
    stats = eval_step(
        student.eval(), processor, audios, ["hello world", "the cat sat"], max_new_tokens=4
    )
    student.train()
    assert stats.ref_words == 5
    assert stats.wer >= 0


def test_checkpoint_round_trip(distill_models, tmp_path):
    student, teacher, processor = distill_models
    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=3), 10)
    train_step(student, teacher, DistillationLoss(), optimizer, scheduler, _batch(processor))
    state = TrainState(step=1, epoch=0, batch_in_epoch=1, samples=2)
    save_checkpoint(tmp_path, student, optimizer, scheduler, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "train_state.pt",
    ]
    restored = load_student(tmp_path)
    restored.model.encoder.requires_grad_(False)  # as the recipe freezes it before the optimizer
    for key, value in student.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    saved = read_train_state(tmp_path)  # weights_only=True inside
    opt2, sched2 = build_optimizer(restored, OptimSection(warmup_steps=3), 10)
    assert apply_train_state(saved, opt2, sched2) == state
    assert sched2.last_epoch == scheduler.last_epoch == 1
    assert opt2.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    first = next(iter(optimizer.state.values()))
    torch.testing.assert_close(next(iter(opt2.state.values()))["exp_avg"], first["exp_avg"])


def test_a_resumed_worker_loads_its_checkpoint_without_a_progress_bar(
    distill_models, tmp_path, capfd
):
    from transformers.utils import logging as hf_logging

    student = distill_models[0]
    save_checkpoint(tmp_path, student, *build_optimizer(student, OptimSection(), 10), TrainState())
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # a fresh worker process: nothing has turned them off yet
    try:
        capfd.readouterr()
        load_student(tmp_path)
        err = capfd.readouterr().err
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()
    assert "Loading weights" not in err and "%|" not in err


def test_on_policy_sequences_score_each_generated_token_up_to_its_end_of_text():
    from distilray.distill.on_policy import prompt_rows, scored_sequences

    prompt = torch.tensor([[1, 2], [1, 2]])
    eos = 9
    generated = torch.tensor([[5, eos, eos], [6, 7, 8]])  # ended after 2 tokens / hit the cap
    ids, mask, positions = scored_sequences(prompt, generated, eos)
    assert ids.tolist() == [[1, 2, 5, eos], [1, 2, 6, 7]]  # input stops before the last token
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    # position t predicts token t + 1: row 0 predicts 5 and eos, row 1 predicts 6, 7, 8
    assert positions.tolist() == [[False, True, True, False], [False, True, True, True]]
    # rows whose prompt ends in <|notimestamps|>, and the prompt's length
    batch = torch.tensor([[1, 3, 4, 4], [1, 4, 4, 4], [1, 3, 5, 6]])
    rows, length = prompt_rows(batch, no_timestamps_id=3)
    assert rows.tolist() == [0, 2] and length == 2


def test_on_policy_rollout_is_the_students_greedy_transcript(distill_models):
    from distilray.distill.on_policy import rollout

    student, _, processor = distill_models
    student = student.eval()
    try:
        batch = _batch(processor, rows=2)
        with torch.no_grad():
            states = student.model.encoder(batch["input_features"]).last_hidden_state
        prompt = batch["decoder_input_ids"][:, :2]
        generated = rollout(student, states, prompt, max_new_tokens=6, eos_id=50256)
        with torch.no_grad():  # the same tokens, teacher-forced without the cache
            full = student(
                encoder_outputs=(states,), decoder_input_ids=torch.cat([prompt, generated], 1)
            ).logits
        for row in range(2):
            for t, token in enumerate(generated[row].tolist()):
                assert token == int(full[row, 1 + t].argmax())
                if token == 50256:
                    assert set(generated[row, t:].tolist()) == {50256}  # padded after its end
                    break
    finally:
        student.train()


def test_train_step_with_on_policy_adds_the_kl_on_the_students_own_transcripts(distill_models):

    from distilray.distill.on_policy import OnPolicy
    from distilray.distill.step import HiddenAlignment

    student, teacher, processor = distill_models
    batch = _batch(processor, rows=3)
    hidden = HiddenAlignment([(1, 3)], weight=1.0)
    runs = {}
    for name, on_policy in (("plain", None), ("on_policy", OnPolicy(0.5, 8, 50362, 50256))):
        runs[name] = _step_on_copy(student, teacher, batch, hidden=hidden, on_policy=on_policy)
    plain, mixed = runs["plain"], runs["on_policy"]
    # the labelled rows' terms are unchanged by the rollout rows sharing their forward pass
    for key in ("kl", "ce", "hidden"):
        assert mixed[key] == pytest.approx(plain[key], rel=1e-4), key
    assert "on_policy_kl" not in plain and mixed["on_policy_kl"] > 0
    assert mixed["loss"] == pytest.approx(
        0.8 * mixed["kl"] + mixed["ce"] + mixed["hidden"] + 0.5 * mixed["on_policy_kl"], rel=1e-4
    )


def test_excess_repeats_marks_a_loop_beyond_the_label_but_not_repeats_the_label_has():
    from distilray.distill.on_policy import excess_repeats

    um, comma, end = 1, 2, 9
    label = [7, um, comma, 8, um, comma, um, comma, end]  # "x um, y um, um," : said twice in a row
    loop = [7, um, comma, um, comma, um, comma, um, comma, um, comma]
    marks = excess_repeats(loop, label, n=4)
    # "um , um ," is in the label once and may be said once more (any n-gram may occur
    # twice); the third and later occurrences are the surplus
    assert marks == [False] * 6 + [True] * 5
    # a transcript that says exactly what the label says has no surplus
    assert not any(excess_repeats(label, label, n=4))
    # neither does one that repeats as often as the label, in another order
    assert not any(excess_repeats([8, um, comma, um, comma, 7, um, comma], label, n=4))


def test_unlikelihood_pushes_down_only_the_marked_tokens():
    from distilray.distill.on_policy import unlikelihood

    logits = torch.zeros(3, 4, requires_grad=True)
    targets = torch.tensor([0, 1, 2])
    marked = torch.tensor([False, True, False])
    loss = unlikelihood(logits, targets, marked)
    assert loss.item() == pytest.approx(-math.log(1 - 0.25) / 3)
    loss.backward()
    assert logits.grad[1, 1] > 0  # gradient descent lowers the marked token's logit
    assert logits.grad[0].abs().sum() == 0 and logits.grad[2].abs().sum() == 0
    none = unlikelihood(logits, targets, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0 and none.requires_grad


def test_rollouts_mark_the_surplus_repeats_of_the_students_transcript(distill_models):
    from distilray.distill.on_policy import OnPolicy, excess_repeats, student_rollouts

    student, _, processor = distill_models
    batch = _batch(processor, rows=2)
    with torch.no_grad():
        states = student.model.encoder(batch["input_features"]).last_hidden_state
    ids, labels = batch["decoder_input_ids"], batch["labels"]
    rolled = student_rollouts(student, states, ids, labels, OnPolicy(0, 12, 50362, 50256, 1.0))
    assert rolled is not None and student.training  # greedy in eval mode, then back
    for r, row in enumerate(rolled.rows.tolist()):
        said = rolled.targets[r][rolled.positions[r]].tolist()
        reference = labels[row][labels[row] != -100].tolist()
        assert rolled.excess[r][rolled.positions[r]].tolist() == excess_repeats(said, reference)
        assert not rolled.excess[r][~rolled.positions[r]].any()


def test_train_step_with_the_repetition_term_adds_it_without_the_on_policy_kl(distill_models):

    from distilray.distill.on_policy import OnPolicy
    from distilray.distill.step import HiddenAlignment

    student, teacher, processor = distill_models
    out = _step_on_copy(
        student,
        teacher,
        _batch(processor, rows=3),
        hidden=HiddenAlignment([(1, 3)], weight=1.0),
        on_policy=OnPolicy(0.0, 24, 50362, 50256, repetition_weight=2.0),
    )
    assert "on_policy_kl" not in out and out["repetition"] >= 0
    assert out["loss"] == pytest.approx(
        0.8 * out["kl"] + out["ce"] + out["hidden"] + 2.0 * out["repetition"], rel=1e-4
    )


def test_progress_line_names_each_loss_term_that_is_on():
    from distilray.distill.loop import _Window, progress_line

    window = _Window(world_size=1)
    window.add({"loss": 1.5, "kl": 0.5, "ce": 1.0, "grad_norm": 1.0, "lr": 3e-4}, samples=8)
    line = progress_line(20, 260, window.summary())
    assert line.startswith("step 20/260: loss 1.5000 (kl 0.5000, ce 1.0000), lr 0.0003, ")
    assert "repetition" not in line and "hidden" not in line
    # terms that only some steps add (the rollouts' on every n-th step) are averaged over those
    window.add(
        {"loss": 2.0, "kl": 0.5, "ce": 1.0, "grad_norm": 1.0, "lr": 3e-4, "repetition": 0.25},
        samples=8,
    )
    line = progress_line(40, 260, window.summary())
    assert "(kl 0.5000, ce 1.0000, repetition 0.2500)" in line


def test_repetition_term_alone_scores_only_the_surplus_tokens_and_gives_the_same_value(
    distill_models,
):

    from distilray.distill.on_policy import OnPolicy

    student, teacher, processor = distill_models
    batch = _batch(processor, rows=3)
    runs = {}
    for name, kl_weight in (("with_kl", 1e-6), ("alone", 0.0)):
        on_policy = OnPolicy(kl_weight, 24, 50362, 50256, repetition_weight=1.0)
        runs[name] = _step_on_copy(student, teacher, batch, on_policy=on_policy)
    # the untrained student loops in its own transcripts: there is a surplus to push down
    assert runs["with_kl"]["repetition"] > 0
    assert runs["alone"]["repetition"] == pytest.approx(runs["with_kl"]["repetition"], rel=1e-4)
    assert "on_policy_kl" not in runs["alone"]


def test_rollouts_transcribe_at_most_on_policy_rows_of_the_batch(distill_models):
    from distilray.distill.on_policy import OnPolicy, student_rollouts

    student, _, processor = distill_models
    batch = _batch(processor, rows=3)
    with torch.no_grad():
        states = student.model.encoder(batch["input_features"]).last_hidden_state
    ids, labels = batch["decoder_input_ids"], batch["labels"]
    every = student_rollouts(student, states, ids, labels, OnPolicy(1.0, 8, 50362, 50256))
    one = student_rollouts(student, states, ids, labels, OnPolicy(1.0, 8, 50362, 50256, 0.0, 1))
    assert every.rows.tolist() == [0, 1, 2] and one.rows.tolist() == [0]
    # the same greedy transcript of the row both rolled out
    width = one.input_ids.shape[1]
    assert torch.equal(one.input_ids[0], every.input_ids[0, :width])


def test_rollouts_can_take_the_rows_with_the_shortest_labels(distill_models):
    from distilray.distill.on_policy import OnPolicy, student_rollouts

    student, _, processor = distill_models
    batch = {k: v.flip(0) for k, v in _batch(processor, rows=3).items()}  # longest label first
    with torch.no_grad():
        states = student.model.encoder(batch["input_features"]).last_hidden_state
    ids, labels = batch["decoder_input_ids"], batch["labels"]

    def rows(shortest: bool) -> list[int]:
        spec = OnPolicy(1.0, 8, 50362, 50256, 0.0, 2, shortest)
        return student_rollouts(student, states, ids, labels, spec).rows.tolist()

    assert rows(shortest=False) == [0, 1]  # the batch's first two
    assert rows(shortest=True) == [1, 2]  # its two shortest labels, in batch order


def test_export_keeps_the_latest_checkpoint_within_noise_of_the_lowest_validation_wer():
    from types import SimpleNamespace

    from distilray.distill.export import choose_checkpoint
    from distilray.errors import DistilrayError

    def ckpt(step):
        return SimpleNamespace(path=f"/run/checkpoint_step_{step:08d}")

    def result(*wers):
        pairs = [
            (ckpt(130 * (i + 1)), {"step": 130 * (i + 1), "eval_wer": w})
            for i, w in enumerate(wers)
        ]
        return SimpleNamespace(
            best_checkpoints=pairs, checkpoint=pairs[-1][0], metrics=pairs[-1][1]
        )

    assert choose_checkpoint(result(0.2, 0.1, 0.3), "best")[0].path.endswith("00000260")
    chosen, metrics = choose_checkpoint(result(0.1028, 0.1028), "best")  # a tie: the later
    assert chosen.path.endswith("00000260") and metrics["step"] == 260
    assert choose_checkpoint(result(0.1, float("nan")), "best")[1]["step"] == 130
    assert choose_checkpoint(result(None, None), "best")[1]["step"] == 260  # no WER: latest
    assert choose_checkpoint(result(0.1, 0.3), "latest")[1]["step"] == 260
    # within noise of the lowest (README row 79: 11.73 % at step 350 of 700, 12.07 % at 700,
    # on 895 words), the later, more averaged checkpoint; a real gap still decides
    assert choose_checkpoint(result(0.1173, 0.1207), "best", 0.01)[1]["step"] == 260
    assert choose_checkpoint(result(0.1173, 0.1207), "best", 0.0)[1]["step"] == 130
    assert choose_checkpoint(result(0.10, 0.13), "best", 0.01)[1]["step"] == 130
    assert choose_checkpoint(result(0.2, 0.1, 0.105), "best", 0.01)[1]["step"] == 390
    with pytest.raises(DistilrayError, match="no checkpoint"):
        choose_checkpoint(SimpleNamespace(best_checkpoints=[], checkpoint=None, metrics={}), "best")


def _text_batch(processor, texts: list[list[int]]) -> dict[str, torch.Tensor]:
    """A batch whose rows are labelled ``<|notimestamps|> text <|endoftext|>``."""
    rng = np.random.default_rng(1)
    audios = [rng.normal(0, 0.05, 16000).astype(np.float32) for _ in texts]
    seqs = [[50257, 50362, *text, 50256] for text in texts]
    return {
        "input_features": torch.from_numpy(log_mel(processor.feature_extractor, audios)),
        **pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=50257, max_tokens=448),
    }


def _loop_shape(loop: list[int], text: list[int]) -> tuple[int, int, int] | None:
    """(cut, span, repeats) when ``loop`` is ``text[:cut]`` followed by its last
    ``span`` tokens said ``repeats`` more times; None otherwise."""
    for cut in range(len(text), 0, -1):
        for span in range(1, cut + 1):
            phrase, rest = text[cut - span : cut], loop[cut:]
            repeats = len(rest) // span
            if loop[:cut] == text[:cut] and repeats and rest == phrase * repeats:
                return cut, span, repeats
    return None


def test_synthetic_loops_repeat_a_phrase_of_the_label_and_mark_only_its_surplus():
    from distilray.distill.on_policy import OnPolicy, excess_repeats, synthetic_loops

    texts = [[400, 401, 402, 403, 404, 405, 406, 407, 408, 409], [410, 411, 412, 413]]
    seqs = [[50257, 50362, *t, 50256] for t in texts]
    padded = pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=50257, max_tokens=448)
    ids, labels = padded["decoder_input_ids"], padded["labels"]
    spec = OnPolicy(0.0, 128, 50362, 50256, repetition_weight=1.0, synthetic=True)
    shapes = set()
    for seed in range(20):
        loops = synthetic_loops(ids, labels, spec, seed=seed)
        assert loops.rows.tolist() == [0, 1]
        for r, text in enumerate(texts):
            said = loops.targets[r][loops.positions[r]].tolist()
            while said and said[-1] == 50256:  # the shorter loop is padded with end of text
                said.pop()
            shape = _loop_shape(said, text)
            assert shape is not None, said
            cut, span, repeats = shape
            assert span <= 8 and repeats >= 2 and span * repeats >= 8
            shapes.add((r, cut == len(text)))
            marks = loops.excess[r][loops.positions[r]].tolist()
            assert marks[: len(said)] == excess_repeats(said, labels[r][labels[r] != -100].tolist())
            assert not any(marks[:cut]) and any(marks)  # the label's own words are never marked
            # teacher forcing: each input is the target before it
            assert torch.equal(loops.input_ids[r, 1:], loops.targets[r, :-1])
    # loops at the end of the text and inside it, on both rows
    assert shapes == {(0, True), (0, False), (1, True), (1, False)}
    again = synthetic_loops(ids, labels, spec, seed=3)
    assert torch.equal(again.input_ids, synthetic_loops(ids, labels, spec, seed=3).input_ids)


def test_synthetic_loops_can_all_start_where_the_label_ends():
    from distilray.distill.on_policy import OnPolicy, synthetic_loops

    texts = [[400, 401, 402, 403, 404, 405, 406, 407, 408, 409], [410, 411, 412, 413]]
    seqs = [[50257, 50362, *t, 50256] for t in texts]
    padded = pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=50257, max_tokens=448)
    ids, labels = padded["decoder_input_ids"], padded["labels"]
    spec = OnPolicy(0.0, 128, 50362, 50256, 1.0, synthetic=True, loops_at_end=True)
    for seed in range(20):
        loops = synthetic_loops(ids, labels, spec, seed=seed)
        for r, text in enumerate(texts):
            said = loops.targets[r][loops.positions[r]].tolist()
            while said and said[-1] == 50256:
                said.pop()
            cut, span, repeats = _loop_shape(said, text)
            assert cut == len(text) and repeats >= 2 and span * repeats >= 8
            assert any(loops.excess[r])


def test_synthetic_loops_skip_timestamped_rows_and_honour_on_policy_rows():
    from distilray.distill.on_policy import OnPolicy, synthetic_loops

    seqs = [
        [50257, 50362, 400, 401, 402, 50256],
        [50257, 50363, 400, 401, 50400, 50256],  # timestamped: <|0.00|> ... (no notimestamps)
        [50257, 50362, 420, 421, 50256],
        [50257, 50362, 430, 431, 432, 433, 434, 50256],
    ]
    padded = pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=50257, max_tokens=448)
    ids, labels = padded["decoder_input_ids"], padded["labels"]
    spec = OnPolicy(0.0, 128, 50362, 50256, repetition_weight=1.0, synthetic=True)
    assert synthetic_loops(ids, labels, spec, seed=0).rows.tolist() == [0, 2, 3]
    shortest = OnPolicy(0.0, 128, 50362, 50256, 1.0, max_rows=2, shortest=True, synthetic=True)
    assert synthetic_loops(ids, labels, shortest, seed=0).rows.tolist() == [0, 2]


def test_train_step_with_synthetic_loops_adds_the_repetition_term_without_a_rollout(
    distill_models, monkeypatch
):
    from distilray.distill import on_policy as module
    from distilray.distill.step import HiddenAlignment

    def no_rollout(*args, **kwargs):
        raise AssertionError("synthetic loops need no decoding")

    monkeypatch.setattr(module, "rollout", no_rollout)
    student, teacher, processor = distill_models
    spec = module.OnPolicy(0.0, 24, 50362, 50256, repetition_weight=2.0, synthetic=True)
    batch = _text_batch(processor, [[400, 401, 402, 403, 404], [410, 411, 412]])
    hidden = HiddenAlignment([(1, 3)], weight=1.0)
    out = _step_on_copy(student, teacher, batch, hidden=hidden, on_policy=spec, seed=5)
    plain = _step_on_copy(student, teacher, batch, hidden=hidden)
    assert out["repetition"] > 0 and "on_policy_kl" not in out
    assert out["loss"] == pytest.approx(
        0.8 * out["kl"] + out["ce"] + out["hidden"] + 2.0 * out["repetition"], rel=1e-4
    )
    # the labelled rows' terms are those of a step without loops
    for term in ("kl", "ce", "hidden"):
        assert out[term] == pytest.approx(plain[term], rel=1e-3)  # wider padding only


def _frozen_kv_copy(student):
    import copy

    from distilray.student.layers import freeze_cross_attention_kv

    student = copy.deepcopy(student)
    freeze_cross_attention_kv(student)
    return student


def test_student_reads_the_teachers_cross_attention_keys_and_values(distill_models):
    from distilray.distill.step import decode_at

    _, teacher, processor = distill_models
    student = build_student(teacher, [0, 3])  # other tests train the fixture's in place
    batch = _batch(processor, rows=3)
    positions = batch["labels"] != -100
    args = (batch["decoder_input_ids"], batch["decoder_attention_mask"], positions)
    with torch.no_grad():
        states = student.model.encoder(batch["input_features"]).last_hidden_state
        kept = decode_at(teacher, states, *args, keep_cross_kv=True)
        own = decode_at(student, states, *args)
        shared = decode_at(student, states, *args, cross_kv=[kept.cross_kv[0], kept.cross_kv[3]])
    assert len(kept.cross_kv) == 4
    assert kept.cross_kv[0].keys.shape == (3, 4, 1500, 16)  # rows, heads, frames, head dim
    torch.testing.assert_close(kept.logits, decode_at(teacher, states, *args).logits)
    torch.testing.assert_close(shared.logits, own.logits)
    # another layer's keys and values change what the student says: they are really read
    wrong = decode_at(student, states, *args, cross_kv=[kept.cross_kv[1], kept.cross_kv[2]])
    assert not torch.allclose(wrong.logits, own.logits, atol=1e-3)


@pytest.mark.parametrize("loops", [False, True])
def test_train_step_with_shared_cross_attention_is_the_same_step(distill_models, loops):
    from distilray.distill.on_policy import OnPolicy

    _, teacher, processor = distill_models
    student = build_student(teacher, [0, 3])
    batch = _text_batch(processor, [[400, 401, 402, 403, 404, 405], [410, 411, 412]])
    terms = {"seed": 3}
    if loops:  # copies of some rows decoded after the batch's: their keys are their row's
        terms["on_policy"] = OnPolicy(0.0, 24, 50362, 50256, repetition_weight=1.0, synthetic=True)
    shared_student, own_student = _frozen_kv_copy(student), _frozen_kv_copy(student)
    shared = _train_on(shared_student, teacher, batch, shared_cross_kv=[0, 3], **terms)
    own = _train_on(own_student, teacher, batch, **terms)
    if loops:
        assert shared["repetition"] > 0
    for term in ("loss", "kl", "ce", "grad_norm") + (("repetition",) if loops else ()):
        assert shared[term] == pytest.approx(own[term], rel=1e-4)
    for (name, a), b in zip(
        shared_student.named_parameters(), own_student.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_a_bfloat16_teachers_keys_and_values_serve_a_float32_student(distill_models):
    """GPU teachers load in bfloat16 (`model.teacher_dtype: auto`) beside a float32
    student; without autocast the student reads their keys and values in its dtype."""
    import copy

    _, teacher, processor = distill_models
    student = _frozen_kv_copy(build_student(teacher, [0, 3]))
    batch = _text_batch(processor, [[400, 401, 402], [410, 411]])
    half = copy.deepcopy(teacher).to(torch.bfloat16)
    shared = _step_on_copy(student, half, batch, shared_cross_kv=[0, 3])
    own = _step_on_copy(student, half, batch)
    assert shared["loss"] == pytest.approx(own["loss"], rel=2e-2)  # bfloat16 keys


def test_training_on_synthetic_loops_teaches_the_student_not_to_go_on_repeating(distill_models):
    import copy

    from distilray.distill.on_policy import OnPolicy, synthetic_loops, unlikelihood
    from distilray.distill.step import StudentHead

    student, teacher, processor = distill_models
    batch = _text_batch(processor, [[400, 401, 402, 403, 404, 405], [410, 411, 412, 413, 414]])
    spec = OnPolicy(0.0, 24, 50362, 50256, repetition_weight=4.0, synthetic=True)
    probe = synthetic_loops(batch["decoder_input_ids"], batch["labels"], spec, seed=99)
    with torch.no_grad():
        states = student.model.encoder(batch["input_features"]).last_hidden_state

    def surplus_penalty(model) -> float:
        """The unlikelihood of the probe loops' surplus tokens (high: it would repeat)."""
        with torch.no_grad():
            logits = StudentHead(model)(
                states[probe.rows], probe.input_ids, probe.attention_mask, probe.positions
            ).logits
        return unlikelihood(
            logits, probe.targets[probe.positions], probe.excess[probe.positions]
        ).item()

    # first teach a copy to loop: cross-entropy on the probe loops' surplus tokens
    looping = copy.deepcopy(student)
    optimizer = torch.optim.Adam([p for p in looping.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(30):
        logits = StudentHead(looping)(
            states[probe.rows], probe.input_ids, probe.attention_mask, probe.excess
        ).logits
        loss = torch.nn.functional.cross_entropy(logits, probe.targets[probe.excess])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert surplus_penalty(looping) > 0.1  # it now goes on repeating
    trained = {}
    for name, on_policy in (("plain", None), ("loops", spec)):
        model = copy.deepcopy(looping)
        optim = OptimSection(learning_rate=3e-3, warmup_steps=0, schedule="constant")
        optimizer, scheduler = build_optimizer(model, optim, 10)
        for step in range(10):
            train_step(
                model,
                teacher,
                DistillationLoss(),
                optimizer,
                scheduler,
                batch,
                on_policy=on_policy,
                seed=step,
            )
        trained[name] = surplus_penalty(model)
    # distillation alone barely moves the loop; the loops' term (other loops: other
    # seeds) unlearns it
    assert trained["loops"] < 0.7 * trained["plain"], trained
