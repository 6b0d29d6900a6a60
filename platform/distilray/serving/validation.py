"""Request checks of the transcription endpoint, each failing with an :class:`APIError`.

Order matters for cost: the bearer token and the declared body size are checked
before the body is read, the body size again while it streams in (a chunked upload
declares none), the form fields before the audio is decoded, and the audio length
while decoding (so an hours-long file costs no more than the limit). Values a client
sent are quoted back cut short (:func:`~distilray.serving.errors.quote`).
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass

import numpy as np
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from distilray.audio import SAMPLING_RATE, decode_audio, duration_s
from distilray.errors import AudioDecodeError, AudioTooLongError
from distilray.serving.config import LimitsConfig, ServeArgs
from distilray.serving.errors import APIError, quote
from distilray.serving.formats import RESPONSE_FORMATS

# Multipart framing and the small text fields around the file part, in bytes.
FORM_OVERHEAD_BYTES = 64 * 1024
# English-only models (tiny.en, Distil-Whisper students): the codes and names accepted.
ENGLISH = {"en", "english"}
KNOWN_FIELDS = {
    "file",
    "model",
    "language",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "timestamp_granularities",
}


@dataclass(frozen=True)
class TranscriptionRequest:
    """A validated ``POST /v1/audio/transcriptions`` form."""

    audio_bytes: bytes  # the uploaded file, still encoded
    filename: str  # client-side name, for logs only
    model: str  # the served model name the client asked for
    response_format: str  # one of RESPONSE_FORMATS


def check_bearer(request: Request, api_key: str | None) -> None:
    """401 unless auth is off (no key) or ``Authorization: Bearer <api_key>`` matches."""
    if not api_key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(
            401,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(401, "incorrect API key", code="invalid_api_key")


def check_content_length(request: Request, max_upload_bytes: int) -> None:
    """413 before reading a body whose declared size is already beyond the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_upload_bytes + FORM_OVERHEAD_BYTES:
        raise _too_large(max_upload_bytes)


class BodyLimit:
    """An ASGI ``receive`` that counts body bytes and raises 413 past the limit.

    The check on ``Content-Length`` cannot cover a chunked upload, which declares no
    size: this one stops reading at the limit, so no body larger than
    ``max_upload_bytes`` plus the form's framing is ever taken in.
    """

    def __init__(self, receive: Receive, max_upload_bytes: int) -> None:
        self._receive = receive
        self.max_upload_bytes = max_upload_bytes
        self.received = 0  # body bytes taken in so far

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_upload_bytes + FORM_OVERHEAD_BYTES:
                raise _too_large(self.max_upload_bytes)
        return message


def _too_large(max_upload_bytes: int) -> APIError:
    return APIError(
        413,
        f"upload is larger than the {max_upload_bytes} byte limit",
        code="file_too_large",
        param="file",
    )


async def parse_form(request: Request, args: ServeArgs) -> TranscriptionRequest:
    """Read and check the multipart form (422 for a missing or unsupported field).

    The body is read through :class:`BodyLimit`: 413 as soon as it passes the limit.
    """
    limited = Request(request.scope, BodyLimit(request.receive, args.limits.max_upload_bytes))
    form = await limited.form(max_files=1, max_fields=16)
    try:
        upload = _check_fields(form, args)
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > args.limits.max_upload_bytes:
        raise _too_large(args.limits.max_upload_bytes)
    return TranscriptionRequest(
        audio_bytes=data,
        filename=upload.filename or "upload",
        model=_text(form, "model") or args.model_name,
        response_format=_text(form, "response_format") or "json",
    )


def _check_fields(form: FormData, args: ServeArgs) -> UploadFile:
    unknown = sorted(set(form.keys()) - KNOWN_FIELDS)
    if unknown:
        raise _unsupported(unknown[0], f"unsupported field {quote(unknown[0])}")
    upload = form.get("file")
    if upload is None:
        raise APIError(
            422,
            "'file' is required: upload the audio as multipart form data",
            code="missing_field",
            param="file",
        )
    if not isinstance(upload, UploadFile):
        raise _unsupported("file", "'file' must be an uploaded file, not a text field")
    fmt = _text(form, "response_format")
    if fmt and fmt not in RESPONSE_FORMATS:
        raise _unsupported(
            "response_format",
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}; got {quote(fmt)}",
        )
    _check_model(_text(form, "model"), args)
    _check_language(_text(form, "language"))
    _check_temperature(_text(form, "temperature"))
    for key in ("timestamp_granularities[]", "timestamp_granularities"):
        for value in form.getlist(key):
            if value != "segment":
                raise _unsupported(key, "only 'segment' timestamp granularity is supported")
    return upload


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _unsupported(key, f"{key!r} must be a text field, not a file")
    return value.strip()


def _unsupported(param: str, message: str) -> APIError:
    return APIError(422, message, code="invalid_value", param=param)


def _check_model(model: str | None, args: ServeArgs) -> None:
    if model and model not in args.model_ids():
        raise APIError(
            404,
            f"model {quote(model)} is not served here; use {args.model_name!r} "
            "(see GET /v1/models)",
            code="model_not_found",
            param="model",
        )


def _check_language(language: str | None) -> None:
    if language and language.lower() not in ENGLISH:
        raise _unsupported(
            "language",
            f"language {quote(language)} is not supported: the model is English-only ('en')",
        )


def _check_temperature(raw: str | None) -> None:
    if not raw:
        return
    try:
        value = float(raw)
    except ValueError:
        raise _unsupported(
            "temperature", f"temperature must be a number; got {quote(raw)}"
        ) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _unsupported("temperature", f"temperature must be between 0 and 1; got {quote(raw)}")
    if value != 0.0:
        raise _unsupported(
            "temperature",
            "only temperature 0 is supported: decoding is greedy so that speculative "
            "decoding returns exactly the teacher's transcript",
        )


def decode_upload(data: bytes, limits: LimitsConfig) -> np.ndarray:
    """16 kHz mono float32 audio.

    400 for undecodable input or a format not accepted, 413 beyond
    ``limits.max_audio_s``, 400 below ``limits.min_audio_s``.
    """
    try:
        audio = decode_audio(data, sampling_rate=SAMPLING_RATE, max_duration_s=limits.max_audio_s)
    except AudioTooLongError:
        raise APIError(
            413,
            f"audio is longer than the {limits.max_audio_s:g} s limit of this server "
            "(limits.max_audio_s): split the recording",
            code="audio_too_long",
            param="file",
        ) from None
    except AudioDecodeError as exc:
        raise APIError(
            400, f"the file is not valid audio: {exc}", code="invalid_audio", param="file"
        ) from None
    if duration_s(audio) < limits.min_audio_s:
        raise APIError(
            400,
            f"audio is {duration_s(audio):.3f} s long; the minimum is {limits.min_audio_s:g} s",
            code="audio_too_short",
            param="file",
        )
    return audio
