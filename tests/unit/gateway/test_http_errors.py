"""The plain-HTTP error mapper: one status per stable code, one body shape, 500 otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tether.errors import (
    CapabilityDenied,
    Conflict,
    ConnectionClosed,
    Forbidden,
    GatewayRunning,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    NotFound,
    Overloaded,
    ParseError,
    RateLimited,
    RequestTimeout,
    RunnerOffline,
    TetherError,
    TooLarge,
    ToolTimeout,
    Unauthorized,
)
from tether.gateway.http_errors import HTTP_STATUS, error_response


def body(response: web.Response) -> Any:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ParseError("x"), 400),
        (InvalidRequest("x"), 400),
        (InvalidParams("x"), 400),
        (Unauthorized("x"), 401),
        (Forbidden("x"), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (GatewayRunning(123), 409),  # a subclass answers with its own code's status
        (RequestTimeout("x"), 408),
        (TooLarge("x"), 413),
        (RateLimited("x"), 429),
        (Overloaded("x"), 503),
    ],
)
def test_each_listed_code_has_its_status(error: TetherError, status: int) -> None:
    response = error_response(error)
    assert response.status == status
    assert HTTP_STATUS[error.code] == status


@pytest.mark.parametrize(
    "error",
    [
        InternalError("x"),
        RunnerOffline("x"),
        ToolTimeout("x"),
        CapabilityDenied("x"),
        MethodNotFound("x"),
        ConnectionClosed("x"),
        TetherError("x"),
    ],
)
def test_an_unlisted_code_is_500(error: TetherError) -> None:
    assert error.code not in HTTP_STATUS
    assert error_response(error).status == 500


def test_an_unknown_code_is_500() -> None:
    class Odd(TetherError):
        code = "something_new"

    response = error_response(Odd("what is this"))
    assert response.status == 500
    assert body(response) == {"error": {"code": "something_new", "message": "what is this"}}


def test_the_body_is_json_with_the_code_and_the_message_only() -> None:
    error = NotFound("no runner named 'box'", data={"runner": "box"})
    response = error_response(error)
    assert response.content_type == "application/json"
    assert body(response) == {"error": {"code": "not_found", "message": "no runner named 'box'"}}


def test_an_error_without_a_message_is_named_by_its_class() -> None:
    assert body(error_response(Forbidden())) == {
        "error": {"code": "forbidden", "message": "Forbidden"}
    }


def test_extra_headers_are_sent() -> None:
    response = error_response(RateLimited("slow down"), headers={"Retry-After": "3"})
    assert response.status == 429
    assert response.headers["Retry-After"] == "3"
    assert response.content_type == "application/json"
