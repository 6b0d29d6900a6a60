"""Manifest formats: JSONL, Parquet (HF-style embedded audio), folders with .txt
references, local and S3, all normalised to one schema; malformed ones rejected
with messages that say what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distilray import storage
from distilray.audio import decode_audio, encode_wav
from distilray.data.manifest import (
    MANIFEST_SCHEMA,
    ManifestColumns,
    folder_table,
    manifest_files,
    normalize_manifest_table,
    read_manifest,
)
from distilray.errors import DataError
from distilray.hashing import stable_id


def tone(seconds: float = 0.25, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    return encode_wav(0.3 * np.sin(2 * np.pi * freq * t))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def jsonl_dataset(tmp_path) -> Path:
    """A JSONL manifest with relative, nested, absolute and s3 audio paths."""
    (tmp_path / "audio" / "sub").mkdir(parents=True)
    (tmp_path / "audio" / "a.wav").write_bytes(tone(freq=300))
    (tmp_path / "audio" / "sub" / "b.wav").write_bytes(tone(freq=600))
    elsewhere = tmp_path / "elsewhere.wav"
    elsewhere.write_bytes(tone(freq=900))
    rows = [
        {"id": 1, "audio": "audio/a.wav", "text": "first"},
        {"id": "two", "audio": "./audio/sub/../sub/b.wav", "text": None},
        {"id": "three", "audio": str(elsewhere)},
        {"id": "four", "audio": "s3://bucket/clips/d.flac", "text": "fourth", "extra": 1},
    ]
    return write_jsonl(tmp_path / "manifest.jsonl", rows)


def test_jsonl_with_relative_paths(jsonl_dataset):
    table = read_manifest(jsonl_dataset)
    assert table.schema == MANIFEST_SCHEMA
    root = jsonl_dataset.parent
    assert table.to_pylist() == [
        {"id": "1", "audio_bytes": None, "audio_path": str(root / "audio/a.wav"), "text": "first"},
        {
            "id": "two",
            "audio_bytes": None,
            "audio_path": str(root / "audio/sub/b.wav"),
            "text": None,
        },
        {
            "id": "three",
            "audio_bytes": None,
            "audio_path": str(root / "elsewhere.wav"),
            "text": None,
        },
        {
            "id": "four",
            "audio_bytes": None,
            "audio_path": "s3://bucket/clips/d.flac",
            "text": "fourth",
        },
    ]
    assert len(decode_audio(table["audio_path"][0].as_py())) == 4000


def test_a_folder_holding_a_jsonl_manifest_is_read_as_jsonl(jsonl_dataset):
    fmt, files = manifest_files(jsonl_dataset.parent)
    assert (fmt, files) == ("jsonl", [str(jsonl_dataset)])
    assert read_manifest(jsonl_dataset.parent).num_rows == 4


def test_parquet_with_hf_style_struct_audio(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "on_disk.wav").write_bytes(tone(freq=500))
    audio_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "id": pa.array([10, 11, 12], pa.int64()),
            "audio": pa.array(
                [
                    {"bytes": tone(freq=200), "path": "10.wav"},
                    {"bytes": None, "path": "data/on_disk.wav"},
                    {"bytes": tone(freq=800), "path": None},
                ],
                audio_type,
            ),
            "text": ["ten", "eleven", None],
            "speaker": ["a", "b", "c"],  # extra columns are ignored
        }
    )
    pq.write_table(table, tmp_path / "train-00000.parquet")
    fmt, files = manifest_files(tmp_path)
    assert fmt == "parquet" and files == [str(tmp_path / "train-00000.parquet")]
    out = read_manifest(tmp_path)
    assert out.schema == MANIFEST_SCHEMA
    assert out["id"].to_pylist() == ["10", "11", "12"]
    assert out["audio_path"].to_pylist() == [None, str(tmp_path / "data/on_disk.wav"), None]
    assert out["text"].to_pylist() == ["ten", "eleven", None]
    embedded = decode_audio(out["audio_bytes"][0].as_py())
    assert len(embedded) == 4000
    assert out["audio_bytes"][1].as_py() is None


def test_parquet_folder_of_many_files_skips_bookkeeping_files(tmp_path):
    for part in range(3):
        rows = {"id": [f"p{part}-{i}" for i in range(4)], "audio": ["x.wav"] * 4}
        pq.write_table(pa.table(rows), tmp_path / f"part-{part}.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".part-0.parquet.crc").write_text("")
    (tmp_path / "_tmp").mkdir()
    (tmp_path / "_tmp" / "partial.parquet").write_text("garbage")
    fmt, files = manifest_files(tmp_path)
    assert fmt == "parquet" and [Path(f).name for f in files] == [
        f"part-{i}.parquet" for i in range(3)
    ]
    table = read_manifest(tmp_path)
    assert table.num_rows == 12
    assert table["text"].null_count == 12


def test_binary_audio_column(tmp_path):
    table = pa.table({"id": ["a"], "audio": pa.array([tone()], pa.binary())})
    out = normalize_manifest_table(table, str(tmp_path))
    assert out["audio_bytes"][0].as_py() == tone()
    assert out["audio_path"][0].as_py() is None


def test_relative_paths_resolve_against_an_s3_base():
    table = pa.table({"id": ["a", "b"], "audio": ["clips/a.wav", "../other/b.wav"]})
    out = normalize_manifest_table(table, "s3://bucket/data")
    assert out["audio_path"].to_pylist() == [
        "s3://bucket/data/clips/a.wav",
        "s3://bucket/other/b.wav",
    ]


def test_folder_of_audio_with_txt_references(tmp_path):
    (tmp_path / "spk1").mkdir()
    (tmp_path / "spk1" / "utt1.wav").write_bytes(tone())
    (tmp_path / "spk1" / "utt1.txt").write_text("hello there\n")
    (tmp_path / "spk1" / "utt2.flac").write_bytes(b"not checked here")
    (tmp_path / "top.mp3").write_bytes(b"nor here")
    (tmp_path / "top.txt").write_text("top level")
    (tmp_path / "notes.md").write_text("ignored")
    fmt, files = manifest_files(tmp_path)
    assert fmt == "folder" and len(files) == 3
    for table in (folder_table(tmp_path), read_manifest(tmp_path)):
        assert table.schema == MANIFEST_SCHEMA
        rows = {r["id"]: r for r in table.to_pylist()}
        assert set(rows) == {"spk1/utt1", "spk1/utt2", "top"}
        assert rows["spk1/utt1"]["text"] == "hello there"
        assert rows["spk1/utt2"]["text"] is None
        assert rows["top"]["text"] == "top level"
        assert rows["top"]["audio_path"] == str(tmp_path / "top.mp3")


def test_folder_with_librispeech_and_sphinx_reference_lists(tmp_path):
    """LibriSpeech's per-chapter ``*.trans.txt`` and CMU Sphinx's ``*.transcription``
    give references to the clips they list; a same-stem ``.txt`` still comes first."""
    chapter = tmp_path / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    for utt in ("1089-134686-0000", "1089-134686-0001", "1089-134686-0002"):
        (chapter / f"{utt}.flac").write_bytes(b"x")
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n"
        "1089-134686-0001 STUFF IT INTO YOU HIS BELLY COUNSELLED HIM\n"
    )
    (chapter / "1089-134686-0002.txt").write_text("own file\n")
    (tmp_path / "wav").mkdir()
    (tmp_path / "etc").mkdir()
    for utt in ("goforward", "numbers"):
        (tmp_path / "wav" / f"{utt}.raw").write_bytes(b"\0\0" * 100)
    (tmp_path / "etc" / "test.transcription").write_text(
        "<s> go forward ++NOISE++ ten meters </s> (goforward)\n"
    )
    rows = {r["id"]: r["text"] for r in folder_table(tmp_path).to_pylist()}
    assert rows == {
        "test-clean/1089/134686/1089-134686-0000": "HE HOPED THERE WOULD BE STEW FOR DINNER",
        "test-clean/1089/134686/1089-134686-0001": "STUFF IT INTO YOU HIS BELLY COUNSELLED HIM",
        "test-clean/1089/134686/1089-134686-0002": "own file",
        "wav/goforward": "go forward ten meters",
        "wav/numbers": None,
    }


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.trans.txt", "utt1\n", r"a.trans.txt:1: expected '<utterance id> <text>'"),
        ("a.transcription", "go forward\n", r"a.transcription:1: expected '<s> text </s>"),
        ("a.transcription", "<s> a </s> (utt1)\n<s> b </s> (utt1)\n", "listed twice"),
    ],
)
def test_malformed_reference_lists_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / "utt1.wav").write_bytes(tone())
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        folder_table(tmp_path)


def test_single_files_are_recognised_by_extension(tmp_path, jsonl_dataset):
    pq.write_table(pa.table({"id": ["a"], "audio": ["a.wav"]}), tmp_path / "m.parquet")
    assert manifest_files(tmp_path / "m.parquet")[0] == "parquet"
    assert manifest_files(jsonl_dataset)[0] == "jsonl"
    (tmp_path / "m.csv").write_text("id,audio\n")
    with pytest.raises(DataError, match="unknown manifest type '.csv'"):
        manifest_files(tmp_path / "m.csv")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"id": "a", "path": "a.wav"}],
            r"no column 'audio' for the audio \(set audio_column to one of the columns it "
            r"has: id, path\)",
        ),
        ([{"audio": "a.wav"}, {"audio": "a.wav"}], "1 duplicate ids"),  # same path, same id
        ([{"audio": "a.wav"}, {"audio": None}], "row 1 has no audio"),
        ([{"id": "a", "audio": "a.wav"}, {"id": "a", "audio": "b.wav"}], "1 duplicate ids: 'a'"),
        ([{"id": None, "audio": "a.wav"}], "every row needs a non-empty id"),
        ([{"id": "a", "audio": "https://host/a.wav"}], "unsupported audio location"),
        ([{"id": "a", "audio": {"bytes": "AAAA"}}], "embed bytes with Parquet"),
    ],
)
def test_malformed_jsonl_is_rejected_naming_the_file(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_invalid_json_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "audio": "a.wav"}\n\n{"id": "b", audio}\n')
    with pytest.raises(DataError, match="line 3: invalid JSON"):
        read_manifest(path)


def test_text_files_that_are_not_utf8_are_named(tmp_path):
    """A JSONL manifest, a reference ``.txt`` beside a clip and a Kaldi ``text`` file
    in another encoding (Latin-1 here) each stop the read with that file's name."""
    latin1 = "caf\u00e9 cr\u00e8me".encode("latin-1")
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b'{"id": "a", "audio": "a.wav", "text": "' + latin1 + b'"}\n')
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "u1.wav").write_bytes(tone())
    (tmp_path / "clips" / "u1.txt").write_bytes(latin1)
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text("u1 ../clips/u1.wav\n")
    (kaldi / "text").write_bytes(b"u1 " + latin1 + b"\n")
    for uri, named in [
        (manifest, f"JSONL manifest {manifest}"),
        (tmp_path / "clips", f"reference {tmp_path / 'clips' / 'u1.txt'}"),
        (kaldi, str(kaldi / "text")),
    ]:
        with pytest.raises(DataError, match="is not UTF-8 text") as info:
            read_manifest(uri)
        assert named in str(info.value)


def test_parquet_errors(tmp_path):
    pq.write_table(pa.table({"name": ["a"], "wav": ["a.wav"]}), tmp_path / "no_audio.parquet")
    with pytest.raises(DataError, match=r"no_audio.parquet: no column 'audio' .* name, wav\)"):
        read_manifest(tmp_path / "no_audio.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="cannot read Parquet manifest"):
        read_manifest(tmp_path / "broken.parquet")
    table = pa.table({"id": ["a"], "audio": pa.array([1.5])})
    with pytest.raises(DataError, match="the audio column has type double"):
        normalize_manifest_table(table, str(tmp_path), source="in-memory")


def test_duplicates_across_files_list_a_few(tmp_path):
    ids = [f"u{i}" for i in range(8)]
    for part in range(2):
        pq.write_table(pa.table({"id": ids, "audio": ["a.wav"] * 8}), tmp_path / f"{part}.parquet")
    with pytest.raises(DataError, match="8 duplicate ids: 'u0', 'u1', 'u2', 'u3', 'u4' and 3 more"):
        read_manifest(tmp_path)


def test_missing_or_empty_locations(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        manifest_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio")
    with pytest.raises(DataError, match="holds no"):
        manifest_files(tmp_path / "empty")
    (tmp_path / "dups").mkdir()
    (tmp_path / "dups" / "a.wav").write_bytes(tone())
    (tmp_path / "dups" / "a.flac").write_bytes(tone())
    with pytest.raises(DataError, match="duplicate ids: 'a'"):
        folder_table(tmp_path / "dups")


@pytest.fixture(scope="module")
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the session's moto S3 server."""
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="manifest-tests")
    return "s3://manifest-tests"


@pytest.mark.s3
def test_s3_jsonl_and_folder_manifests(s3_bucket):
    base = f"{s3_bucket}/set1"
    storage.write_bytes(f"{base}/audio/a.wav", tone())
    storage.write_bytes(f"{base}/audio/a.txt", b"alpha")
    rows = [{"id": "a", "audio": "audio/a.wav", "text": "alpha"}]
    storage.write_bytes(
        f"{base}/manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()
    )
    assert manifest_files(base) == ("jsonl", [f"{base}/manifest.jsonl"])
    table = read_manifest(base)
    assert table["audio_path"].to_pylist() == [f"{base}/audio/a.wav"]
    assert len(decode_audio(table["audio_path"][0].as_py())) == 4000
    folder = folder_table(f"{base}/audio")
    assert folder.to_pylist() == [
        {"id": "a", "audio_bytes": None, "audio_path": f"{base}/audio/a.wav", "text": "alpha"}
    ]


@pytest.mark.s3
def test_s3_parquet_prefix(s3_bucket, tmp_path):
    local = tmp_path / "p.parquet"
    pq.write_table(
        pa.table({"id": ["x", "y"], "audio": ["clips/x.wav", "s3://other/y.wav"]}), local
    )
    storage.write_bytes(f"{s3_bucket}/set2/p.parquet", local.read_bytes())
    fmt, files = manifest_files(f"{s3_bucket}/set2/")
    assert (fmt, files) == ("parquet", [f"{s3_bucket}/set2/p.parquet"])
    table = read_manifest(f"{s3_bucket}/set2")
    assert table["audio_path"].to_pylist() == [f"{s3_bucket}/set2/clips/x.wav", "s3://other/y.wav"]


def test_columns_are_mapped_by_name_in_jsonl_and_parquet(tmp_path):
    rows = [
        {"utt": "u1", "file": "clips/a.wav", "transcript": "alpha", "text": "not this one"},
        {"utt": "u2", "file": "clips/b.wav", "transcript": "beta", "text": None},
    ]
    columns = ManifestColumns(audio="file", text="transcript", id="utt")
    jsonl = read_manifest(write_jsonl(tmp_path / "m.jsonl", rows), columns)
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pq" / "m.parquet")
    parquet = read_manifest(tmp_path / "pq", columns)
    for table, root in ((jsonl, tmp_path), (parquet, tmp_path / "pq")):
        assert table.schema == MANIFEST_SCHEMA
        assert table["id"].to_pylist() == ["u1", "u2"]
        assert table["text"].to_pylist() == ["alpha", "beta"]
        assert table["audio_path"].to_pylist() == [
            str(root / "clips/a.wav"),
            str(root / "clips/b.wav"),
        ]


def test_a_named_column_that_is_missing_lists_the_columns_there_are(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"path": "a.mp3", "sentence": "hi"}])
    with pytest.raises(DataError, match=r"no column 'text' for the text .* path, sentence\)"):
        read_manifest(path, ManifestColumns(audio="path", text="text"))
    with pytest.raises(DataError, match=r"no column 'clip_id' for the id"):
        read_manifest(path, ManifestColumns(audio="path", id="clip_id"))


def test_ids_without_an_id_column_hash_the_path_as_written_or_the_bytes(tmp_path):
    """The same manifest read from two folders (two machines) gets the same ids."""
    rows = [{"path": "clips/a.mp3", "sentence": "one"}, {"path": "clips/b.mp3"}]
    first = read_manifest(write_jsonl(tmp_path / "x" / "m.jsonl", rows), ManifestColumns("path"))
    second = read_manifest(write_jsonl(tmp_path / "y" / "m.jsonl", rows), ManifestColumns("path"))
    assert first["id"].to_pylist() == second["id"].to_pylist()
    assert first["id"].to_pylist() == [stable_id("clips/a.mp3"), stable_id("clips/b.mp3")]
    assert first["audio_path"] != second["audio_path"]
    assert first["text"].to_pylist() == [None, None]  # `sentence` is not read unless named

    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    embedded = pa.table(
        {
            "audio": pa.array(
                [{"bytes": tone(freq=200), "path": None}, {"bytes": tone(), "path": "b.wav"}], audio
            )
        }
    )
    out = normalize_manifest_table(embedded, str(tmp_path))
    assert out["id"].to_pylist() == [stable_id(tone(freq=200)), stable_id("b.wav")]
    assert out["audio_path"].to_pylist() == [None, None]  # embedded bytes are what is read


def _kaldi_dir(root: Path) -> Path:
    """A Kaldi data directory: ``data/test`` of a recipe, its audio elsewhere."""
    (root / "corpus" / "spk1").mkdir(parents=True)
    (root / "corpus" / "spk1" / "u1.wav").write_bytes(tone(freq=300))
    (root / "corpus" / "spk1" / "u2.flac").write_bytes(b"not audio")
    data = root / "recipe" / "data" / "test"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text(
        f"spk1-u1 {root / 'corpus' / 'spk1' / 'u1.wav'}\n\n"
        "spk1-u2 flac -c -d -s ../../../corpus/spk1/u2.flac |\n"
        "spk1-u3 /nowhere/u3.wav\n"
    )
    (data / "text").write_text("spk1-u1 HELLO   THERE\nspk1-u2\nother-utt SOMETHING ELSE\n")
    (data / "utt2spk").write_text("spk1-u1 spk1\nspk1-u2 spk1\nspk1-u3 spk1\n")
    return data


def test_a_kaldi_data_directory_is_a_manifest(tmp_path):
    """``wav.scp`` gives ids and audio (relative paths against the data directory; a
    command that only decodes a file is that file), ``text`` the references: an utterance listed with no words has an empty reference,
    one not listed has none. The folder or its ``wav.scp`` may be named."""
    data = _kaldi_dir(tmp_path)
    want = [
        {
            "id": "spk1-u1",
            "audio_bytes": None,
            "audio_path": str(tmp_path / "corpus" / "spk1" / "u1.wav"),
            "text": "HELLO THERE",
        },
        {
            "id": "spk1-u2",
            "audio_bytes": None,
            "audio_path": str(tmp_path / "corpus" / "spk1" / "u2.flac"),
            "text": "",
        },
        {"id": "spk1-u3", "audio_bytes": None, "audio_path": "/nowhere/u3.wav", "text": None},
    ]
    for uri in (data, data / "wav.scp", str(data) + "/"):
        assert manifest_files(uri) == ("folder", [str(data / "wav.scp")])
        table = read_manifest(uri)
        assert table.schema == MANIFEST_SCHEMA
        assert table.to_pylist() == want
    assert len(decode_audio(want[0]["audio_path"])) == 4000


def test_labelling_reads_a_kaldi_directory_and_records_its_bad_audio(tmp_path):
    """The labelling reader takes the directory as any manifest; audio that is not
    there or not audio becomes the row's error when it is decoded, never a crash."""
    from distilray.labelling.prepare import decode_row
    from distilray.labelling.readers import input_ids

    data = _kaldi_dir(tmp_path)
    assert input_ids(str(data)).to_pylist() == ["spk1-u1", "spk1-u2", "spk1-u3"]
    clips = {r["id"]: decode_row(r, 30.0) for r in read_manifest(data).to_pylist()}
    assert clips["spk1-u1"].error is None and len(clips["spk1-u1"].audio) == 4000
    assert clips["spk1-u2"].error and clips["spk1-u3"].error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("u1 sox /a/u1.flac -t wav - |\n", r"wav.scp:1: 'u1' is read by running a command"),
        ("u1 sph2pipe -f wav -p -c 2 /a/u1.sph |\n", r"wav.scp:1: 'u1' is read by running a"),
        ("u1 flac -c -d -s /a/u1.flac /a/u2.flac |\n", r"wav.scp:1: 'u1' is read by running"),
        ("u1 /a/raw.ark:1234\n", r"wav.scp:1: 'u1' is an offset into a Kaldi archive"),
        ("u1 /a/u1.wav\nu1 /a/u2.wav\n", r"wav.scp:2: recording 'u1' is listed twice"),
        ("u1\n", r"wav.scp:1: expected '<recording id> <audio file>'"),
        ("\n", r"wav.scp lists no recordings"),
    ],
)
def test_what_a_wav_scp_cannot_give_is_refused_with_its_line(tmp_path, content, message):
    (tmp_path / "wav.scp").write_text(content)
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path)


def test_kaldi_segments_are_refused_with_what_to_do(tmp_path):
    data = _kaldi_dir(tmp_path)
    (data / "segments").write_text("utt1 spk1-u1 0.0 1.5\n")
    with pytest.raises(DataError, match="segments: utterances cut out of longer recordings"):
        read_manifest(data)


@pytest.mark.s3
def test_a_kaldi_directory_on_s3(s3_bucket):
    base = f"{s3_bucket}/kaldi/data/test"
    storage.write_bytes(f"{s3_bucket}/kaldi/audio/a.wav", tone())
    storage.write_bytes(f"{base}/wav.scp", b"a ../../audio/a.wav\n")
    storage.write_bytes(f"{base}/text", b"a ALPHA\n")
    assert manifest_files(base) == ("folder", [f"{base}/wav.scp"])
    assert read_manifest(base).to_pylist() == [
        {
            "id": "a",
            "audio_bytes": None,
            "audio_path": f"{s3_bucket}/kaldi/audio/a.wav",
            "text": "ALPHA",
        }
    ]
