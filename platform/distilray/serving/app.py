"""The serving app: a FastAPI ingress in front of the batched model deployment.

``APIIngress`` parses and checks requests and decodes the audio (cheap, CPU-only,
scaled on its own); ``WhisperModel`` holds the models and batches short requests
(see :mod:`distilray.serving.model`). ``build_app`` is the ``import_path`` of
``serve_config.yaml``; its ``args`` are a :class:`ServeArgs`.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoint
# annotations (``request: Request``) at runtime through Serve's ingress wrapper.
import asyncio
import logging
import os

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from distilray import __version__
from distilray.config import format_validation_error
from distilray.errors import ConfigError
from distilray.serving import validation
from distilray.serving.config import ServeArgs
from distilray.serving.errors import install_error_handlers
from distilray.serving.formats import needs_timestamps, render
from distilray.serving.model import WhisperModel

logger = logging.getLogger(__name__)

INGRESS_DEPLOYMENT = "APIIngress"

api = FastAPI(
    title="distilray transcription",
    version=__version__,
    description="Whisper transcription with speculative decoding, in the OpenAI convention.",
)
install_error_handlers(api)


def _stat_headers(stats: dict) -> dict[str, str]:
    """Per-request decoding figures as ``x-distilray-*`` headers (batch size, ...)."""
    return {
        f"x-distilray-{k.replace('_', '-')}": f"{v:.4g}" if isinstance(v, float) else str(v)
        for k, v in stats.items()
    }


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

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request) -> Response:
        limits = self.args.limits
        validation.check_bearer(request, self.api_key)
        validation.check_content_length(request, limits.max_upload_bytes)
        form = await validation.parse_form(request, self.args)
        audio = await asyncio.to_thread(
            validation.decode_upload, form.audio_bytes, limits.max_audio_s
        )
        timestamps = needs_timestamps(form.response_format)
        transcript = await self.model.transcribe.remote(audio, timestamps)
        body, media_type = render(transcript, form.response_format)
        return Response(body, media_type=media_type, headers=_stat_headers(transcript.stats))


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
