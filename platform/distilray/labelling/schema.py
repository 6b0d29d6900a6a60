"""Columns of a labelled dataset: what ``distilray label`` writes, one row per (packed) clip.

``audio`` holds the decoded clip re-encoded as 16 kHz mono 16-bit PCM WAV
(``distilray.audio.encode_wav``), exactly the samples the teacher heard, so
training reads no original file and decodes no exotic codec; WAV costs about
115 MB per audio hour (FLAC would halve that at some CPU cost). Rows that failed
carry ``error`` and a null ``audio``.
"""

from __future__ import annotations

import pyarrow as pa

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # input id; packed chunks: ids joined by "+"
        pa.field("source_ids", pa.list_(pa.string())),  # the input ids in this row (resume key)
        pa.field("audio", pa.binary()),  # 16 kHz mono 16-bit WAV; null when error
        pa.field("duration_s", pa.float64()),  # seconds of audio; null when decoding failed
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
    ]
)
OUTPUT_COLUMNS = OUTPUT_SCHEMA.names
# What resume and the summary read back from existing shards (no audio).
STATE_COLUMNS = ["id", "source_ids", "duration_s", "wer", "teacher", "error"]
FEATURES = "input_features"  # log-mel column between the CPU tasks and the teacher actors
