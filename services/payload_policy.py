"""Per-workflow payload policy: keep payloads in full, as a summary of keys and sizes, or not at all."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from services.errors import InvalidInput

MODES = ("full", "summary", "off")


@dataclass(frozen=True)
class PayloadPolicy:
    """How much of a payload the ledger keeps; max_payload_bytes cuts larger ones to a summary."""

    log_payload: str = "full"
    max_payload_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.log_payload not in MODES:
            raise InvalidInput(f"log_payload must be one of {', '.join(MODES)}, got {self.log_payload!r}")
        if self.max_payload_bytes is not None and self.max_payload_bytes < 1:
            raise InvalidInput("max_payload_bytes must be a positive number of bytes")

    def encode(self) -> str:
        """The compact form stored on each execution (executions.payload_policy)."""
        if self.max_payload_bytes is None:
            return self.log_payload
        return f"{self.log_payload};max={self.max_payload_bytes}"

    @classmethod
    def decode(cls, text: str | None) -> PayloadPolicy:
        """Parse the stored form; unknown or empty text means full."""
        if not text:
            return cls()
        mode, _, rest = text.partition(";")
        limit = int(rest.removeprefix("max=")) if rest.startswith("max=") else None
        return cls(mode if mode in MODES else "full", limit)

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, default: PayloadPolicy) -> PayloadPolicy:
        """A workflow's policy from its stored settings, falling back to the global default per field."""
        data = data or {}
        return cls(data.get("log_payload") or default.log_payload,
                   data.get("max_payload_bytes", default.max_payload_bytes))

    def applied(self, size: int) -> str:
        """The mode used for a payload of size bytes: the policy's own, or summary when over the limit."""
        if self.log_payload == "full" and self.max_payload_bytes is not None and size > self.max_payload_bytes:
            return "summary"
        return self.log_payload


def reduce(value: Any, raw: bytes, mode: str) -> dict[str, Any]:
    """What summary and off keep of a payload: sizes and SHA-256 hashes, never values."""
    kept: dict[str, Any] = {"payload_not_kept": True, "policy": mode, "bytes": len(raw),
                            "sha256": hashlib.sha256(raw).hexdigest()}
    if mode == "summary":
        kept["type"] = type(value).__name__ if not isinstance(value, dict | list) else (
            "object" if isinstance(value, dict) else "array")
        if isinstance(value, dict):
            kept["keys"] = {str(k): _size(v) for k, v in value.items()}
        elif isinstance(value, list):
            kept["items"] = len(value)
    return kept


def for_workflow(conn: Connection, *, workflow_id: str, version: int | None, default: PayloadPolicy) -> PayloadPolicy:
    """The policy of a workflow version (latest when version is None); the default when unknown."""
    row = conn.execute(sa.text(
        "SELECT payload_policy FROM workflow_versions WHERE workflow_id = :w "
        "AND (CAST(:v AS int) IS NULL OR version = :v) ORDER BY version DESC LIMIT 1"),
        {"w": workflow_id, "v": version}).scalar()
    return PayloadPolicy.from_mapping(row, default)


def masking_for(conn: Connection, *, workflow_id: str, version: int | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A workflow version's own masking rules (keys, paths); latest version when version is None."""
    row = conn.execute(sa.text(
        "SELECT masking FROM workflow_versions WHERE workflow_id = :w "
        "AND (CAST(:v AS int) IS NULL OR version = :v) ORDER BY version DESC LIMIT 1"),
        {"w": workflow_id, "v": version}).scalar() or {}
    return tuple(row.get("keys") or ()), tuple(row.get("paths") or ())


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode())
