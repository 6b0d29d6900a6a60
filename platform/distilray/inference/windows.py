"""Whisper's 30 s window in every unit we count it in, derived from one another.

Every stage speaks of the same window: labelling pads clips to it, distillation
decodes at most one, the engine calls anything longer long-form. The figures
follow from the feature extractor's settings, as in openai/whisper's audio.py.

>>> N_SAMPLES, N_FRAMES, N_AUDIO_CTX, TIME_PRECISION
(480000, 3000, 1500, 0.02)
"""

from __future__ import annotations

from distilray.audio import SAMPLING_RATE

CHUNK_LENGTH_S = 30  # seconds in one Whisper window
HOP_LENGTH = 160  # samples between log-mel frames: 10 ms at 16 kHz
N_SAMPLES = CHUNK_LENGTH_S * SAMPLING_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 log-mel frames in a window
FRAMES_PER_POSITION = 2  # the encoder's second convolution has stride 2
N_AUDIO_CTX = N_FRAMES // FRAMES_PER_POSITION  # 1500 encoder positions
TIME_PRECISION = CHUNK_LENGTH_S / N_AUDIO_CTX  # 0.02 s: one timestamp token, one position


def is_long_form(num_samples: int) -> bool:
    """Whether 16 kHz audio of ``num_samples`` needs long-form decoding (over one window)."""
    return num_samples > N_SAMPLES
