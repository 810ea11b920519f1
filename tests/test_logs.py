"""Logged exceptions keep their type and frames, never a message that may quote a prompt."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from aijobs.logs import JsonFormatter

PROMPT = "my " + "secret prompt"  # not in any source line the traceback shows


class _Request(BaseModel):
    max_tokens: int


def _logged() -> str:
    record = logging.LogRecord("aijobs.worker", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_info = sys.exc_info()
    return str(json.loads(JsonFormatter().format(record))["exc"])


def test_a_validation_error_quoting_a_prompt_is_logged_without_its_message() -> None:
    with pytest.raises(RuntimeError):
        try:
            try:
                _Request.model_validate({"max_tokens": PROMPT})
            except Exception as exc:
                raise RuntimeError(f"again: {PROMPT}") from exc
        except RuntimeError:
            exc_text = _logged()
            raise
    assert "secret" not in exc_text
    assert "pydantic_core._pydantic_core.ValidationError: (message not logged)" in exc_text
    assert "RuntimeError: (message not logged)" in exc_text
    assert "test_logs.py" in exc_text  # the frames are kept


def test_a_database_error_keeps_its_message() -> None:
    with pytest.raises(OperationalError):
        try:
            raise OperationalError("SELECT 1", None, ConnectionRefusedError("refused"))
        except OperationalError:
            exc_text = _logged()
            raise
    assert "refused" in exc_text
