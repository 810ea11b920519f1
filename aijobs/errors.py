"""Errors as values with a code: one family, rendered once as problem+json by the API."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A failure the client should see, with its HTTP status and machine-readable code."""

    status = 400
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class InvalidRequest(AppError):
    status = 422
    code = "invalid_request"
    title = "Invalid request"


class UnknownModel(AppError):
    status = 422
    code = "unknown_model"
    title = "Unknown model"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(AppError):
    status = 403
    code = "unauthorized"
    title = "Forbidden"


class AdminOff(AppError):
    """The admin API does not exist here (no AIJOBS_ADMIN_TOKEN); an auth problem like
    401 and 403, hence the same code."""

    status = 404
    code = "unauthorized"
    title = "Not found"


class NotFound(AppError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(AppError):
    status = 409
    code = "invalid_request"
    title = "Conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "invalid_request"
    title = "Payload too large"


class IdempotencyConflict(AppError):
    status = 422
    code = "idempotency_conflict"
    title = "Idempotency-Key reused with a different body"


class UnknownPrompt(AppError):
    status = 422
    code = "unknown_prompt"
    title = "Unknown prompt"


class CheckFailed(AppError):
    """An input check refused the request at submit (the output's own failure is a
    job error with the same code)."""

    status = 422
    code = "check_failed"
    title = "Check failed"


class Unsupported(AppError):
    """The request is valid, but this deployment (or the chosen provider) cannot serve it."""

    status = 422
    code = "unsupported"
    title = "Unsupported"
