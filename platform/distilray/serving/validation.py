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
from dataclasses import dataclass, replace

import numpy as np
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from distilray.audio import SAMPLING_RATE, decode_audio, duration_s
from distilray.errors import AudioDecodeError, AudioTooLongError
from distilray.serving.config import LimitsConfig, ServeArgs
from distilray.serving.errors import APIError, quote
from distilray.serving.formats import RESPONSE_FORMATS, STREAM_FORMATS

# Multipart framing and the small text fields around the file part, in bytes.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 4096  # Whisper reads the last 223 tokens of a prompt; more is waste
GRANULARITIES = ("segment", "word")
TRUE, FALSE = ("true", "1"), ("false", "0", "")
# Fields of the OpenAI SDK's transcription/translation requests that this server
# understands, each with its meaning; anything else is a 400 naming the field.
TEXT_FIELDS = {"model", "language", "prompt", "response_format", "temperature", "stream"}
GRANULARITY_FIELDS = ("timestamp_granularities[]", "timestamp_granularities")
# Sent by the SDK for other OpenAI models; refused with a reason, never ignored silently.
UNSUPPORTED = {
    "include[]": "include (logprobs) is not supported: verbose_json carries avg_logprob",
    "known_speaker_names[]": "speaker diarization is not supported",
    "known_speaker_references[]": "speaker diarization is not supported",
    "keywords[]": "keywords are not supported: pass context as 'prompt'",
    "languages[]": "a list of languages is not supported: send one 'language'",
}
TRANSLATION_FIELDS = {"file", "model", "prompt", "response_format", "temperature"}


@dataclass(frozen=True)
class ModelInfo:
    """What the served teacher can do, as the model deployment reports it."""

    multilingual: bool  # takes a language and translates; False for `.en` models
    languages: tuple[str, ...]  # language codes it knows ("en", ...)
    words_unavailable: str | None = None  # why word timestamps cannot work, or None


@dataclass(frozen=True)
class TranscriptionRequest:
    """A validated ``POST /v1/audio/transcriptions`` (or ``translations``) form."""

    audio_bytes: bytes  # the uploaded file, still encoded
    filename: str  # client-side name, for logs only
    model: str  # the served model name the client asked for
    response_format: str  # one of RESPONSE_FORMATS
    language: str | None = None  # a language code the model knows; None: detect
    prompt: str = ""  # Whisper's initial prompt (conditions decoding)
    temperature: float = 0.0  # 0: greedy (speculative with an assistant); > 0: sampled
    granularities: frozenset[str] = frozenset({"segment"})  # of verbose_json timestamps
    stream: bool = False  # answer as server-sent events
    task: str = "transcribe"  # or "translate" (the translations endpoint)


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


async def parse_form(
    request: Request, args: ServeArgs, info: ModelInfo, task: str = "transcribe"
) -> TranscriptionRequest:
    """Read and check the multipart form (400 for a missing or invalid field).

    The body is read through :class:`BodyLimit`: 413 as soon as it passes the limit.
    """
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise _missing_file()
    limited = Request(request.scope, BodyLimit(request.receive, args.limits.max_upload_bytes))
    form = await limited.form(max_files=1, max_fields=32)
    try:
        upload = _check_file(form, task)
        parsed = _check_fields(form, args, info, task)
        data = await upload.read()
    finally:
        await form.close()
    if len(data) > args.limits.max_upload_bytes:
        raise _too_large(args.limits.max_upload_bytes)
    return replace(parsed, audio_bytes=data, filename=upload.filename or "upload")


def _missing_file() -> APIError:
    return APIError(
        400,
        "'file' is required: upload the audio as multipart form data",
        code="missing_field",
        param="file",
    )


def _check_file(form: FormData, task: str) -> UploadFile:
    allowed = TRANSLATION_FIELDS if task == "translate" else None
    for key in form:
        if key in UNSUPPORTED and allowed is None:
            raise _invalid(key.rstrip("[]"), UNSUPPORTED[key])
        known = key == "file" or key in TEXT_FIELDS or key in GRANULARITY_FIELDS
        known = known or key.startswith("chunking_strategy")
        if not known or (allowed is not None and key not in allowed):
            raise _invalid(key, f"unsupported field {quote(key)}")
    upload = form.get("file")
    if upload is None:
        raise _missing_file()
    if not isinstance(upload, UploadFile):
        raise _invalid("file", "'file' must be an uploaded file, not a text field")
    return upload


def _check_fields(
    form: FormData, args: ServeArgs, info: ModelInfo, task: str
) -> TranscriptionRequest:
    fmt = _text(form, "response_format") or "json"
    if fmt not in RESPONSE_FORMATS:
        raise _invalid(
            "response_format",
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}; got {quote(fmt)}",
        )
    model = _text(form, "model") or args.model_name
    _check_model(model, args)
    if task == "translate" and not info.multilingual:
        raise _invalid(
            "model",
            "translation needs a multilingual teacher; this server's teacher is English-only "
            "(serve a multilingual Whisper, e.g. openai/whisper-small, to translate)",
            code="unsupported_task",
        )
    _check_chunking(form)
    granularities = _check_granularities(form, fmt, info)
    stream = _check_stream(_text(form, "stream"), fmt)
    return TranscriptionRequest(
        audio_bytes=b"",
        filename="",
        model=model,
        response_format=fmt,
        language=check_language(_text(form, "language"), info),
        prompt=_check_prompt(_text(form, "prompt")),
        temperature=_check_temperature(_text(form, "temperature")),
        granularities=granularities,
        stream=stream,
        task=task,
    )


def _text(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(key, f"{key!r} must be a text field, not a file")
    return value.strip()


def _invalid(param: str, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code=code, param=param)


def _check_model(model: str | None, args: ServeArgs) -> None:
    if model and model not in args.model_ids():
        raise APIError(
            404,
            f"model {quote(model)} is not served here; use {args.model_name!r} "
            "(see GET /v1/models)",
            code="model_not_found",
            param="model",
        )


def check_language(language: str | None, info: ModelInfo) -> str | None:
    """The language code for ``language`` (a code or an English name), or a 400 that
    names what this model accepts. None or empty: the model detects it."""
    if not language:
        return None
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
    if code in info.languages:
        return code
    if not info.multilingual:
        message = f"language {quote(language)} is not supported: the model is English-only ('en')"
    else:
        message = (
            f"language {quote(language)} is not supported; use an ISO-639-1 code the model "
            f"knows: {', '.join(info.languages)}"
        )
    raise _invalid("language", message)


def _check_prompt(prompt: str | None) -> str:
    if prompt and len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid(
            "prompt",
            f"prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are accepted "
            "(Whisper reads only its last 223 tokens)",
        )
    return prompt or ""


def _check_temperature(raw: str | None) -> float:
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise _invalid("temperature", f"temperature must be a number; got {quote(raw)}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise _invalid("temperature", f"temperature must be between 0 and 1; got {quote(raw)}")
    return value


def _check_granularities(form: FormData, fmt: str, info: ModelInfo) -> frozenset[str]:
    values = [v for key in GRANULARITY_FIELDS for v in form.getlist(key)]
    for value in values:
        if value not in GRANULARITIES:
            raise _invalid(
                "timestamp_granularities",
                f"timestamp_granularities must be 'segment' and/or 'word'; got {quote(value)}",
            )
    chosen = frozenset(values) or frozenset({"segment"})
    if "word" in chosen:
        if fmt != "verbose_json":
            raise _invalid(
                "timestamp_granularities",
                "word timestamps need response_format=verbose_json",
            )
        if info.words_unavailable:
            raise _invalid("timestamp_granularities", info.words_unavailable)
    return chosen


def _check_stream(raw: str | None, fmt: str) -> bool:
    value = (raw or "").lower()
    if value not in TRUE + FALSE:
        raise _invalid("stream", f"stream must be true or false; got {quote(raw)}")
    stream = value in TRUE
    if stream and fmt not in STREAM_FORMATS:
        raise _invalid(
            "stream",
            f"stream=true sends text events; use response_format json or text, not {fmt!r}",
        )
    return stream


def _check_chunking(form: FormData) -> None:
    """``chunking_strategy``: "auto" is what this server does anyway (30 s windows)."""
    for key in form:
        if key.startswith("chunking_strategy"):
            value = _text(form, key)
            if key != "chunking_strategy" or value != "auto":
                raise _invalid(
                    "chunking_strategy",
                    "only chunking_strategy 'auto' is supported: long audio is always decoded "
                    "in overlapping 30 s windows",
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
