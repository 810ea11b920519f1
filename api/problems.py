"""RFC 9457 problem+json for every error, each with a machine-readable `code`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aijobs.errors import AppError

CODES_BY_STATUS = {
    401: "unauthorized",
    403: "unauthorized",
    404: "not_found",
    402: "budget_exceeded",
    429: "rate_limited",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:aijobs:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if "retry_after_s" in exc.extra:
        headers = {"Retry-After": str(exc.extra["retry_after_s"])}
    return problem(
        exc.status,
        exc.code,
        exc.title,
        exc.detail,
        instance=request.url.path,
        extra=exc.extra,
        headers=headers,
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(part for part in first["loc"] if part != "body") or "request"
    return problem(
        422,
        "invalid_request",
        "Invalid request",
        f"{where}: {first['msg']}",
        instance=request.url.path,
        extra={"errors": errors},
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODES_BY_STATUS.get(exc.status_code, "invalid_request")
    return problem(
        exc.status_code,
        code,
        HTTPStatus(exc.status_code).phrase,
        str(exc.detail),
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    return problem(
        500, "internal", "Internal error", "an unexpected error occurred", instance=request.url.path
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
