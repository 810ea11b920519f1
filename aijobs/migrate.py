"""Alembic, driven from code: `aijobs migrate` and the readiness check use it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import migrations


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # No sqlalchemy.url here: migrations/env.py reads it from settings (and configparser
    # would choke on the %-escapes of a socket path).
    return config


def upgrade() -> None:
    command.upgrade(alembic_config(), "head")


@lru_cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
