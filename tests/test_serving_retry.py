"""A request whose model replica died is sent again, then answered 503 + Retry-After."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.serve.exceptions import BackPressureError

from distilray.serving.app import (
    QUEUE_FULL_RETRY_AFTER_S,
    RETRY_AFTER_S,
    transcribe_on_a_replica,
)
from distilray.serving.errors import APIError
from distilray.serving.model import DecodeRequest

AUDIO = np.zeros(160, np.float32)
REQUEST = DecodeRequest()


class FakeHandle:
    """``handle.transcribe.remote(...)`` answering from a script of outcomes."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.transcribe = self

    def remote(self, audio, request):
        self.calls += 1
        outcome = self.outcomes.pop(0)

        async def answer():
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return answer()


@pytest.mark.parametrize("lost", [ActorDiedError(), ActorUnavailableError("gone", None)])
def test_lost_replica_is_retried(lost):
    handle = FakeHandle(lost, "transcript")
    assert asyncio.run(transcribe_on_a_replica(handle, AUDIO, REQUEST)) == "transcript"
    assert handle.calls == 2


def test_full_queue_is_429_with_retry_after_at_once():
    handle = FakeHandle(BackPressureError(num_queued_requests=1, max_queued_requests=1))
    with pytest.raises(APIError) as info:
        asyncio.run(transcribe_on_a_replica(handle, AUDIO, REQUEST))
    error = info.value
    assert (error.status, error.code, error.type) == (
        429,
        "rate_limit_exceeded",
        "rate_limit_error",
    )
    assert error.response().headers["retry-after"] == str(QUEUE_FULL_RETRY_AFTER_S)
    assert handle.calls == 1


def test_no_replica_is_503_with_retry_after():
    handle = FakeHandle(ActorDiedError(), ActorDiedError())
    with pytest.raises(APIError) as info:
        asyncio.run(transcribe_on_a_replica(handle, AUDIO, REQUEST))
    error = info.value
    assert (error.status, error.code, error.type) == (503, "model_unavailable", "server_error")
    response = error.response()
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)


def test_other_errors_are_not_retried():
    handle = FakeHandle(ValueError("a bug"), "transcript")
    with pytest.raises(ValueError):
        asyncio.run(transcribe_on_a_replica(handle, AUDIO, REQUEST))
    assert handle.calls == 1
