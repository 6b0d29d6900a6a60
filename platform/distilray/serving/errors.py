"""OpenAI-shaped JSON errors: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the endpoint reports goes through :class:`APIError`; the handlers
installed by :func:`install_error_handlers` turn FastAPI's own errors (unknown
route, wrong method, request validation) and unexpected exceptions into the same
shape, so a client never sees an HTML page or a bare 500 traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
MAX_ECHO_CHARS = 64  # of a client's value quoted back in an error message
MAX_MESSAGE_CHARS = 512  # of any error message: a backstop against echoing a whole field


def quote(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr`` of a client-sent value for an error message, cut to ``limit`` characters.

    >>> quote("x" * 100, limit=4)
    "'xxxx'... (100 characters)"
    """
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class APIError(Exception):
    """An error answered to the client with ``status`` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        message = _truncate(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type
        self.param = None if param is None else _truncate(param, MAX_ECHO_CHARS)
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {**({"WWW-Authenticate": "Bearer"} if self.status == 401 else {}), **self.headers}
        return JSONResponse(self.body(), status_code=self.status, headers=headers or None)


def _http_error(status: int, detail: object) -> APIError:
    codes = {404: "not_found", 405: "method_not_allowed"}
    return APIError(status, str(detail), code=codes.get(status, "http_error"))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error on ``app`` as OpenAI-shaped JSON."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _http_error(exc.status_code, exc.detail).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        msg = f"{param}: {first.get('msg', 'invalid request')}" if param else "invalid request"
        return APIError(400, msg, code="invalid_value", param=param).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error while serving a request")
        return APIError(
            500, "internal error while transcribing", code="internal_error", type="server_error"
        ).response()
