"""Columns of a labelled dataset: what ``distilray label`` writes, one row per (packed) clip.

``audio`` holds the decoded clip re-encoded as 16 kHz mono 16-bit PCM WAV
(``distilray.audio.encode_wav``), exactly the samples the teacher heard, so
training reads no original file and decodes no exotic codec; WAV costs about
115 MB per audio hour (FLAC would halve that at some CPU cost). It is stored as
the ``{bytes, path}`` struct of Hugging Face ``datasets``' ``Audio`` feature, and
the schema's ``huggingface`` metadata says so: ``load_dataset("parquet", ...)`` on
the output gives an ``Audio(sampling_rate=16000)`` column. Rows that failed carry
``error`` and a null ``audio``. Shards written before the struct hold the WAV as
plain binary; :func:`wav_bytes` reads both.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

SAMPLING_RATE = 16000  # of the stored WAV
AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets' Audio
# Features as `datasets` records them in a Parquet schema (the other columns' types
# it reads from Arrow itself).
HF_METADATA = {
    b"huggingface": json.dumps(
        {"info": {"features": {"audio": {"_type": "Audio", "sampling_rate": SAMPLING_RATE}}}}
    ).encode()
}

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # input id; packed chunks: ids joined by "+"
        pa.field("source_ids", pa.list_(pa.string())),  # the input ids in this row (resume key)
        pa.field("audio", AUDIO_TYPE),  # {bytes: 16 kHz mono 16-bit WAV, path: <id>.wav}
        pa.field("duration_s", pa.float64()),  # seconds of audio; null when decoding failed
        # where the audio's last sound ends (a level detector, labelling.prepare.speech_end_s):
        # distillation drops labels that stopped well before it (data.max_speech_after_label_s)
        pa.field("speech_end_s", pa.float64()),
        pa.field("text", pa.string()),  # reference transcript; null when unknown
        pa.field("pseudo_label", pa.string()),  # teacher's transcript, special tokens removed
        # Full decoder sequence: prompt (<|startoftranscript|> ... ), generated tokens
        # (timestamps too when asked for), then <|endoftext|> unless cut at max_label_length.
        pa.field("pseudo_label_ids", pa.list_(pa.int32())),
        # The teacher's confidence (Whisper's decoding rules; distilray.inference.confidence):
        # what filters rows without a reference. Null when the row has no label.
        pa.field("avg_logprob", pa.float64()),  # mean log-probability of the generated tokens
        pa.field("compression_ratio", pa.float64()),  # gzip ratio of pseudo_label (> 2.4: loop)
        pa.field("no_speech_prob", pa.float64()),  # P(<|nocaptions|>) at the transcript start
        pa.field("wer", pa.float64()),  # normalised WER of pseudo_label vs text; null: no text
        pa.field("teacher", pa.string()),  # teacher model reference
        pa.field("error", pa.string()),  # why the row has no label; null when fine
    ],
    metadata=HF_METADATA,
)
OUTPUT_COLUMNS = OUTPUT_SCHEMA.names
# What resume and the summary read back from existing shards (no audio).
STATE_COLUMNS = ["id", "source_ids", "duration_s", "wer", "teacher", "error"]
FEATURES = "input_features"  # log-mel column between the CPU tasks and the teacher actors


def audio_struct(ids: pa.ChunkedArray, wavs: pa.ChunkedArray) -> pa.StructArray:
    """The ``audio`` column: each WAV with a file name from its row id (which tells
    ``datasets`` the format); null where the row has no audio. No bytes are copied."""
    wavs = pc.cast(wavs, pa.binary()).combine_chunks()
    paths = pc.binary_join_element_wise(pc.cast(ids, pa.string()), ".wav", "").combine_chunks()
    return pa.StructArray.from_arrays([wavs, paths], fields=list(AUDIO_TYPE), mask=pc.is_null(wavs))


def wav_bytes(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A labelled ``audio`` column as its WAV bytes: the struct's ``bytes`` field, or
    the column itself when a shard was written before the struct (plain binary)."""
    if pa.types.is_struct(column.type):
        return pc.struct_field(column, "bytes")
    return column
