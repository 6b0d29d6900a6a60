"""Model references (tiny.en, folders, s3://, hub ids), loading, the cache, tiny random models."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from distilray.errors import ModelLoadError
from distilray.models import load_whisper, resolve_model
from distilray.models.cache import build_once
from distilray.models.resolve import check_model_ref, s3_cache_dir
from distilray.models.testing import make_tiny_random_whisper

SILENCE = torch.zeros(1, 80, 3000)  # 30 s of log-mel features


def entries(folder: Path) -> list[str]:
    """Folder contents, less the lock files builders leave behind."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def same_weights(model, other) -> bool:
    theirs = other.state_dict()
    mine = model.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_local_folder_resolves_and_loads_in_eval_mode(tiny_random):
    assert resolve_model(str(tiny_random)) == tiny_random.resolve()
    model, processor = load_whisper(tiny_random)
    assert not model.training
    assert model.config.d_model == 64 and model.config.decoder_layers == 4
    assert model.generation_config.decoder_start_token_id == 50257
    assert len(processor.tokenizer) == 51864 and processor.feature_extractor.feature_size == 80
    with torch.no_grad():
        tokens = model.generate(SILENCE, max_new_tokens=6)
    assert tokens.shape[0] == 1 and 1 <= tokens.shape[1] <= 6


def test_load_whisper_dtype_and_attention_options(tiny_random):
    model, _ = load_whisper(tiny_random, dtype="bfloat16", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_whisper(tiny_random, dtype="float8")
    with pytest.raises(ModelLoadError, match="invalid device"):
        load_whisper(tiny_random, device="toaster")


def test_missing_or_non_model_folders_fail_clearly(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model("./runs/no/such/student")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_whisper(tmp_path)
    with pytest.raises(ModelLoadError, match="empty model reference"):
        resolve_model("  ")


def test_tiny_en_alias_is_the_converted_teacher(tiny_en):
    assert resolve_model("tiny.en") == tiny_en
    assert (tiny_en / "model.safetensors").is_file() and (tiny_en / "normalizer.json").is_file()


def test_hub_id_fails_fast_and_clearly_without_network():
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="Hugging Face Hub"):
        resolve_model("openai/whisper-tiny.en")
    assert time.monotonic() - start < 15


def test_tiny_random_is_seeded_and_sized(tiny_random, tmp_path):
    sizes = {"encoder_layers": 1, "decoder_layers": 2, "d_model": 32, "heads": 2, "ffn": 64}
    model, _ = load_whisper(make_tiny_random_whisper(tmp_path / "m", **sizes, seed=0))
    config = model.config
    assert (config.encoder_layers, config.decoder_layers, config.d_model) == (1, 2, 32)
    assert (config.max_source_positions, config.max_target_positions) == (1500, 448)
    assert model.generation_config.alignment_heads == [[1, 0], [1, 1]]
    again, _ = load_whisper(make_tiny_random_whisper(tmp_path / "again", **sizes, seed=0))
    assert same_weights(model, again)
    with torch.no_grad():
        assert model.generate(SILENCE, max_new_tokens=4).shape[0] == 1


def test_build_once_builds_once_and_replaces_on_force(tmp_path):
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        (folder / "config.json").write_text(str(len(calls)))

    target = tmp_path / "m"
    assert build_once(target, build) == target
    assert build_once(target, build) == target and len(calls) == 1
    build_once(target, build, force=True)
    assert (target / "config.json").read_text() == "2"
    assert entries(tmp_path) == ["m"]  # no temporary folders left


def test_concurrent_builders_build_once(tmp_path):
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        time.sleep(0.3)
        (folder / "config.json").write_text("done")

    target = tmp_path / "m"
    threads = [threading.Thread(target=build_once, args=(target, build)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and (target / "config.json").read_text() == "done"


def test_build_once_loser_of_a_race_uses_the_winners_folder(tmp_path):
    target = tmp_path / "m"

    def slow_build(folder: Path) -> None:
        (folder / "config.json").write_text("mine")
        target.mkdir()  # another process finished first
        (target / "config.json").write_text("theirs")

    assert build_once(target, slow_build) == target
    assert (target / "config.json").read_text() == "theirs"
    assert entries(tmp_path) == ["m"]


def test_failed_build_leaves_nothing_behind(tmp_path):
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise ModelLoadError("boom")

    with pytest.raises(ModelLoadError, match="boom"):
        build_once(tmp_path / "m", broken)
    assert entries(tmp_path) == []


@pytest.mark.s3
def test_s3_model_is_downloaded_once_and_loads(s3_server, tiny_random, tmp_path, monkeypatch):
    import boto3

    monkeypatch.setenv("DISTILRAY_CACHE", str(tmp_path / "cache"))
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="models")
    for path in tiny_random.iterdir():
        s3.upload_file(str(path), "models", f"students/tiny/{path.name}")
    uri = "s3://models/students/tiny"

    folder = resolve_model(uri)
    assert folder == s3_cache_dir(uri) and folder.is_relative_to(tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_random.iterdir())
    model, processor = load_whisper(uri)
    local, local_processor = load_whisper(tiny_random)
    assert same_weights(model, local)
    text = " Hello there."
    assert processor.tokenizer(text).input_ids == local_processor.tokenizer(text).input_ids

    s3.delete_object(Bucket="models", Key="students/tiny/config.json")
    assert resolve_model(uri) == folder  # cached: S3 is not read again
    s3.put_object(Bucket="models", Key="students/notes/readme.txt", Body=b"not a model")
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model("s3://models/students/notes")
    assert not s3_cache_dir("s3://models/students/notes").exists()


@pytest.mark.s3
def test_s3_missing_prefix_fails_clearly(s3_server, tmp_path, monkeypatch):
    import boto3

    monkeypatch.setenv("DISTILRAY_CACHE", str(tmp_path / "cache"))
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="empty")
    with pytest.raises(ModelLoadError, match="cannot download model s3://empty/nothing"):
        resolve_model("s3://empty/nothing")
    assert not s3_cache_dir("s3://empty/nothing").exists()


def test_check_model_ref_fails_fast_without_loading(tiny_random, tmp_path, s3_server):
    """The driver-side check that stages run before they start actors."""
    import boto3

    from distilray.models.resolve import check_model_ref

    check_model_ref("tiny.en")
    check_model_ref(tiny_random)
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_model_ref(tmp_path / "no-student")
    with pytest.raises(ModelLoadError, match="Hugging Face Hub"):
        check_model_ref("openai/whisper-tiny.en")
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.create_bucket(Bucket="refs")
    s3.upload_file(str(tiny_random / "config.json"), "refs", "student/config.json")
    check_model_ref("s3://refs/student/")
    with pytest.raises(ModelLoadError, match="no config.json"):
        check_model_ref("s3://refs/other")


def hub_cache_with_two_revisions(cache: Path) -> dict[str, str]:
    """The Hub cache's own layout for ``acme/whisper-mini``: ``main`` a 1-layer decoder,
    tag ``v2`` a 2-layer one; returns their commit hashes."""
    repo = cache / "models--acme--whisper-mini"
    commits = {"main": "a" * 40, "v2": "b" * 40}
    for (name, commit), layers in zip(commits.items(), (1, 2), strict=True):
        make_tiny_random_whisper(repo / "snapshots" / commit, decoder_layers=layers)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / name).write_text(commit)
    return commits


def test_hub_revision_reaches_the_download_and_the_loaded_weights(tmp_path, monkeypatch):
    from huggingface_hub import constants

    commits = hub_cache_with_two_revisions(tmp_path / "hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snapshots = tmp_path / "hub" / "models--acme--whisper-mini" / "snapshots"
    assert resolve_model("acme/whisper-mini") == snapshots / commits["main"]
    assert resolve_model("acme/whisper-mini@v2") == snapshots / commits["v2"]
    assert resolve_model(f"acme/whisper-mini@{commits['v2']}") == snapshots / commits["v2"]
    assert load_whisper("acme/whisper-mini@v2")[0].config.decoder_layers == 2
    assert load_whisper("acme/whisper-mini")[0].config.decoder_layers == 1
    check_model_ref("acme/whisper-mini@v2")  # the driver's check asks for the same revision
    for check in (resolve_model, check_model_ref):
        with pytest.raises(ModelLoadError, match="Hugging Face Hub"):
            check("acme/whisper-mini@v3")
    with pytest.raises(ModelLoadError, match="org/name@revision"):
        resolve_model("acme/whisper-mini@")


def test_loading_a_model_draws_no_progress_bars(tiny_random, capfd):
    from distilray.models import load_whisper

    capfd.readouterr()
    load_whisper(str(tiny_random))
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err
