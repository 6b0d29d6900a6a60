"""Data as Hugging Face ``datasets`` writes and reads it: Parquet exports in the layouts
of Common Voice (``path``/``sentence``, no id) and LibriSpeech (``file``/``text``/``id``)
go in through the column mapping, and a labelled output loads with ``load_dataset``
as an ``Audio`` column whose WAV bytes are the samples the teacher heard."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

datasets = pytest.importorskip("datasets")

from distilray.audio import decode_audio, encode_wav  # noqa: E402
from distilray.data.manifest import ManifestColumns, read_manifest  # noqa: E402
from distilray.errors import DataError  # noqa: E402
from distilray.hashing import stable_id  # noqa: E402
from distilray.labelling.readers import input_ids  # noqa: E402

SENTENCES = ["the cat sat", "a dog ran home", "birds sing at dawn", "rain on the roof"]


def tone(i: int, seconds: float = 0.6) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32)


def to_parquet(columns: dict, audio: list[dict], path: Path) -> Path:
    """Write through ``datasets`` itself: the ``audio`` column cast to its Audio feature."""
    ds = datasets.Dataset.from_dict({**columns, "audio": audio})
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=16000))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


@pytest.fixture(scope="module")
def common_voice(tmp_path_factory) -> Path:
    """Common Voice's columns and types: no id, ``path`` a bare file name, ``sentence``."""
    folder = tmp_path_factory.mktemp("common_voice")
    names = [f"common_voice_en_{4100 + i}.wav" for i in range(len(SENTENCES))]
    for i, name in enumerate(names):  # the clips also lie beside the export
        (folder / name).write_bytes(encode_wav(tone(i)))
    columns = {
        "client_id": [f"c{i % 2}" for i in range(len(names))],
        "path": names,
        "sentence": SENTENCES,
        "up_votes": [2, 3, 2, 4],
        "down_votes": [0, 0, 1, 0],
        "age": ["twenties", "", "fifties", ""],
        "gender": ["", "female", "male", ""],
        "accent": [""] * 4,
        "locale": ["en"] * 4,
        "segment": [""] * 4,
    }
    audio = [{"bytes": encode_wav(tone(i)), "path": n} for i, n in enumerate(names)]
    return to_parquet(columns, audio, folder / "data" / "train-00000-of-00001.parquet")


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory) -> Path:
    """LibriSpeech's columns and types: ``file``, ``audio``, upper-case ``text``, ints, ``id``."""
    folder = tmp_path_factory.mktemp("librispeech")
    ids = [f"1272-128104-{i:04d}" for i in range(len(SENTENCES))]
    (folder / "audio").mkdir()
    for i, utt in enumerate(ids):
        (folder / "audio" / f"{utt}.wav").write_bytes(encode_wav(tone(i)))
    columns = {
        "file": [f"audio/{utt}.wav" for utt in ids],
        "text": [s.upper() for s in SENTENCES],
        "speaker_id": [1272] * 4,
        "chapter_id": [128104] * 4,
        "id": ids,
    }
    audio = [{"bytes": encode_wav(tone(i)), "path": f"{utt}.wav"} for i, utt in enumerate(ids)]
    return to_parquet(columns, audio, folder / "validation.parquet")


def test_common_voice_export_reads_with_sentence_as_text_and_hashed_ids(common_voice):
    schema = pq.read_schema(common_voice)
    assert b"huggingface" in schema.metadata and "id" not in schema.names  # as datasets wrote it
    table = read_manifest(common_voice.parent, ManifestColumns(text="sentence"))
    names = [f"common_voice_en_{4100 + i}.wav" for i in range(4)]
    assert table["id"].to_pylist() == [stable_id(n) for n in names]
    assert table["text"].to_pylist() == SENTENCES
    for i, data in enumerate(table["audio_bytes"].to_pylist()):
        np.testing.assert_allclose(decode_audio(data), tone(i), atol=1e-4)
    # The driver's id scan reads only the paths and agrees with the full read.
    assert input_ids(str(common_voice.parent), ManifestColumns(text="sentence")).equals(
        table["id"].combine_chunks()
    )
    # The `path` column instead: the clips beside the export, same ids.
    by_path = read_manifest(common_voice, ManifestColumns(audio="path", text="sentence"))
    assert by_path["id"].to_pylist() == table["id"].to_pylist()
    assert by_path["audio_path"].to_pylist() == [str(common_voice.parent / n) for n in names]


def test_common_voice_without_the_mapping_says_which_columns_exist(common_voice):
    with pytest.raises(DataError, match=r"no column 'transcript' for the text .*sentence"):
        read_manifest(common_voice, ManifestColumns(text="transcript"))
    with pytest.raises(DataError, match=r"no column 'clip' for the audio .*client_id, path"):
        input_ids(str(common_voice), ManifestColumns(audio="clip"))


def test_librispeech_export_reads_as_is_or_by_file(librispeech):
    table = read_manifest(librispeech)  # id, audio and text are already there
    assert table["id"].to_pylist() == [f"1272-128104-{i:04d}" for i in range(4)]
    assert table["text"].to_pylist() == [s.upper() for s in SENTENCES]
    assert table["audio_bytes"].null_count == 0
    by_file = read_manifest(librispeech, ManifestColumns(audio="file"))
    assert by_file["id"].to_pylist() == table["id"].to_pylist()
    paths = by_file["audio_path"].to_pylist()
    assert paths == [str(librispeech.parent / f"audio/{i}.wav") for i in table["id"].to_pylist()]
    np.testing.assert_allclose(decode_audio(paths[2]), tone(2), atol=1e-4)


def test_evaluation_datasets_take_the_mapping(common_voice, librispeech, tmp_path):
    from distilray.evaluation.config import EvalConfig
    from distilray.evaluation.run import load_datasets

    cfg = EvalConfig.model_validate(
        {
            "datasets": [
                {"name": "cv", "manifest": str(common_voice), "text_column": "sentence"},
                {"name": "ls", "manifest": str(librispeech), "audio_column": "file", "limit": 2},
            ],
            "output_dir": str(tmp_path),
        }
    )
    table = load_datasets(cfg)
    assert table["dataset"].to_pylist() == ["cv"] * 4 + ["ls"] * 2
    assert table["text"].to_pylist() == SENTENCES + [s.upper() for s in SENTENCES[:2]]


def wav_samples(data: bytes) -> tuple[int, np.ndarray]:
    """Sample rate and float samples of a 16-bit PCM WAV, read with the standard library."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), pcm.astype(np.float32) / 32768


def torchcodec_works() -> bool:
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


@pytest.mark.ray
def test_labelled_output_loads_as_a_datasets_audio_column(
    ray_local, tiny_random, common_voice, tmp_path
):
    from distilray.distill.config import DataSection
    from distilray.distill.data import eval_dataset, train_dataset
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling

    out = tmp_path / "labelled"
    cfg = LabelConfig(
        input=str(common_voice.parent),
        output=str(out),
        teacher=str(tiny_random),
        text_column="sentence",
        batch_size=4,
        max_label_length=8,
        concatenate_audio=False,
        return_timestamps=False,
        progress_every_s=1,
    )
    assert run_labelling(cfg).run["rows_written"] == 4

    ds = datasets.load_dataset("parquet", data_files=str(out / "run-*" / "*.parquet"))["train"]
    assert ds.features["audio"] == datasets.Audio(sampling_rate=16000)
    assert sorted(ds["id"]) == sorted(
        stable_id(p) for p in pq.read_table(common_voice)["path"].to_pylist()
    )
    raw = ds.cast_column("audio", datasets.Audio(decode=False))
    by_text = {row["text"]: row for row in raw}
    assert set(by_text) == set(SENTENCES)
    for i, sentence in enumerate(SENTENCES):
        audio = by_text[sentence]["audio"]
        assert audio["path"] == f"{by_text[sentence]['id']}.wav"
        rate, samples = wav_samples(audio["bytes"])
        assert rate == 16000
        np.testing.assert_allclose(samples, tone(i), atol=1e-4)
    if torchcodec_works():  # datasets decodes Audio with torchcodec (needs FFmpeg)
        decoded = ds.with_format("numpy")[0]["audio"].get_all_samples()
        assert decoded.sample_rate == 16000

    # Distillation reads the struct's WAV bytes, for evaluation and for training.
    data = DataSection(train=str(out), eval=str(out), wer_threshold=None)
    rows = eval_dataset(data).take_all()
    assert sorted(r["reference"] for r in rows) == sorted(SENTENCES)
    assert all(decode_audio(bytes(r["audio"])).size == tone(0).size for r in rows)
    train = train_dataset(data, eos=None).take_all()
    assert len(train) == 4 and all(decode_audio(bytes(r["audio"])).size for r in train)
