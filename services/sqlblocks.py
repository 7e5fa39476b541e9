"""Named SQL blocks kept in .sql files beside the services (`-- name: <block>` starts each block)."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import sqlalchemy as sa

SQL_DIR = Path(__file__).resolve().parent / "sql"
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def load(filename: str) -> dict[str, sa.TextClause]:
    """Every named block of services/sql/<filename> as a text clause with bound parameters."""
    text = (SQL_DIR / filename).read_text()
    parts = _NAME.split(text)
    return {name: sa.text(body.strip().rstrip(";")) for name, body in zip(parts[1::2], parts[2::2], strict=True)}
