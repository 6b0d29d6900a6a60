"""The serving app: a FastAPI ingress in front of the batched model deployment.

``APIIngress`` parses and checks requests and decodes the audio (cheap, CPU-only,
scaled on its own); ``WhisperModel`` holds the models and batches short requests
(see :mod:`distilray.serving.model`). ``build_app`` is the ``import_path`` of
``serve_config.yaml``; its ``args`` are a :class:`ServeArgs`. The API description
(``/openapi.json``, ``/docs``, ``/redoc``) is behind the same key as ``/v1/*``.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint
# annotations (``request: Request``) at runtime through Serve's ingress wrapper.
import asyncio
import logging
import os

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from distilray import __version__
from distilray.config import format_validation_error
from distilray.errors import ConfigError
from distilray.serving import validation
from distilray.serving.config import ServeArgs
from distilray.serving.errors import APIError, install_error_handlers
from distilray.serving.formats import Transcript, needs_timestamps, render, sse
from distilray.serving.model import DecodeRequest, WhisperModel
from distilray.serving.validation import ModelInfo, TranscriptionRequest

logger = logging.getLogger(__name__)

INGRESS_DEPLOYMENT = "APIIngress"
REPLICA_ATTEMPTS = 2  # a request lost with its model replica is sent once more
RETRY_AFTER_S = 5  # told to clients when no replica could take it (a restart takes seconds)
QUEUE_FULL_RETRY_AFTER_S = 2  # told to clients when every model replica's queue is full
# The model replica died, or none could be reached: the request never finished there.
REPLICA_LOST = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)

api = FastAPI(
    title="distilray transcription",
    version=__version__,
    description="Whisper transcription with speculative decoding, in the OpenAI convention.",
    # FastAPI's own documentation routes know nothing of the API key: the ingress
    # serves them itself, behind check_bearer.
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
install_error_handlers(api)


def _openapi_url(request: Request) -> str:
    """Where this app's schema is, under the route prefix Serve mounted it at."""
    return request.scope.get("root_path", "").rstrip("/") + "/openapi.json"


def _stat_headers(stats: dict) -> dict[str, str]:
    """Per-request decoding figures as ``x-distilray-*`` headers (batch size, ...)."""
    return {
        f"x-distilray-{k.replace('_', '-')}": f"{v:.4g}" if isinstance(v, float) else str(v)
        for k, v in stats.items()
    }


def queue_full() -> APIError:
    """429: every model replica's queue (``max_queued_requests``) is full."""
    return APIError(
        429,
        "the server is at capacity (its request queue is full); retry after a few seconds",
        code="rate_limit_exceeded",
        type="rate_limit_error",
        headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)},
    )


async def transcribe_on_a_replica(
    model: DeploymentHandle,
    audio: np.ndarray,
    request: DecodeRequest,
    attempts: int = REPLICA_ATTEMPTS,
) -> Transcript:
    """``model.transcribe``, sent again when the replica died or was unavailable.

    Transcription is idempotent, so a request lost with its replica is simply sent
    again (the router picks a live replica); when every attempt fails the client gets
    503 with ``Retry-After``, never a bare 500. A full queue is 429 at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await model.transcribe.remote(audio, request)
        except BackPressureError:
            raise queue_full() from None
        except REPLICA_LOST as exc:
            logger.warning("model replica lost (attempt %d/%d): %r", attempt, attempts, exc)
    raise _unavailable()


def _unavailable() -> APIError:
    return APIError(
        503,
        "no model replica could take the request right now; retry shortly",
        code="model_unavailable",
        type="server_error",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def stream_events(model: DeploymentHandle, audio: np.ndarray, request: DecodeRequest):
    """The model's stream, its first event awaited here: a full queue or a lost replica
    is then still an HTTP error status, not a broken stream."""
    events = model.options(stream=True).stream.remote(audio, request)
    try:
        first = await events.__anext__()
    except BackPressureError:
        raise queue_full() from None
    except REPLICA_LOST as exc:
        logger.warning("model replica lost before streaming: %r", exc)
        raise _unavailable() from None

    async def body():
        yield sse(first)
        async for event in events:
            yield sse(event)

    return body()


def decode_request(form: TranscriptionRequest) -> DecodeRequest:
    """What the model needs to know of a validated form."""
    verbose = form.response_format == "verbose_json"
    return DecodeRequest(
        timestamps=needs_timestamps(form.response_format),
        words=verbose and "word" in form.granularities,
        scores=verbose,
        language=form.language,
        task=form.task,
        prompt=form.prompt,
        temperature=form.temperature,
    )


@serve.deployment(
    name=INGRESS_DEPLOYMENT,
    max_ongoing_requests=64,
    ray_actor_options={"num_cpus": 0.25},
)
@serve.ingress(api)
class APIIngress:
    """HTTP front: auth, limits, form validation and audio decoding."""

    def __init__(self, model: DeploymentHandle, args: dict) -> None:
        self.args = ServeArgs.model_validate(args)
        self.model = model
        env = self.args.api_key_env
        self.api_key = os.environ.get(env, "").strip() if env else ""
        self._info: ModelInfo | None = None  # asked of the model deployment once
        logger.info("ingress ready (auth %s)", f"from ${env}" if self.api_key else "off")

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict:
        validation.check_bearer(request, self.api_key)
        card = {
            "id": self.args.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "distilray",
        }
        return {"object": "list", "data": [card]}

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> dict:
        validation.check_bearer(request, self.api_key)
        root = request.scope.get("root_path", "").rstrip("/")
        return {**api.openapi(), **({"servers": [{"url": root}]} if root else {})}

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request) -> HTMLResponse:
        validation.check_bearer(request, self.api_key)
        return get_swagger_ui_html(openapi_url=_openapi_url(request), title=api.title)

    @api.get("/redoc", include_in_schema=False)
    async def redoc(self, request: Request) -> HTMLResponse:
        validation.check_bearer(request, self.api_key)
        return get_redoc_html(openapi_url=_openapi_url(request), title=api.title)

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request) -> Response:
        return await self._audio(request, "transcribe")

    @api.post("/v1/audio/translations")
    async def translations(self, request: Request) -> Response:
        """Speech in any language of a multilingual teacher, as English text."""
        return await self._audio(request, "translate")

    async def _audio(self, request: Request, task: str) -> Response:
        limits = self.args.limits
        validation.check_bearer(request, self.api_key)
        validation.check_content_length(request, limits.max_upload_bytes)
        info = await self._model_info()
        form = await validation.parse_form(request, self.args, info, task)
        audio = await asyncio.to_thread(validation.decode_upload, form.audio_bytes, limits)
        decode = decode_request(form)
        if form.stream:
            body = await stream_events(self.model, audio, decode)
            return StreamingResponse(body, media_type="text/event-stream")
        transcript = await transcribe_on_a_replica(self.model, audio, decode)
        body, media_type = render(transcript, form.response_format, form.granularities)
        return Response(body, media_type=media_type, headers=_stat_headers(transcript.stats))

    async def _model_info(self) -> ModelInfo:
        if self._info is None:
            try:
                self._info = await self.model.info.remote()
            except BackPressureError:
                raise queue_full() from None
            except REPLICA_LOST:
                raise _unavailable() from None
        return self._info


def parse_args(args: dict | ServeArgs | None) -> ServeArgs:
    """Validate the app ``args``, raising :class:`ConfigError` with one line per problem."""
    if isinstance(args, ServeArgs):
        return args
    try:
        return ServeArgs.model_validate(args or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "serve args")) from None


def make_app(
    args: dict | ServeArgs | None = None,
    *,
    ingress_options: dict | None = None,
    model_options: dict | None = None,
    model: DeploymentHandle | None = None,
) -> serve.Application:
    """The app, with optional per-deployment option overrides (resources, env, scaling).

    With ``model`` (a handle to a running ``WhisperModel``, e.g. from
    ``serve.get_deployment_handle``) the app is only a second front door, such as
    an authenticated route, onto models that are already deployed.
    """
    parsed = parse_args(args).model_dump()
    if model is None:
        model = WhisperModel.options(**(model_options or {})).bind(parsed)
    return APIIngress.options(**(ingress_options or {})).bind(model, parsed)


def build_app(args: dict) -> serve.Application:
    """App builder for ``import_path: distilray.serving.app:build_app``."""
    return make_app(args)
