"""Domain exceptions; the edges (REST, CLI, pages) map them to statuses, exit codes and messages."""
from __future__ import annotations

from collections.abc import Sequence


class FlowledgerError(Exception):
    """Base of every error the product raises on purpose."""


class ConfigurationError(FlowledgerError):
    """A setting is wrong; the message names the setting."""


class DatabaseUnavailable(FlowledgerError):
    """The database cannot be reached or is not migrated."""


class NotFound(FlowledgerError):
    """The requested record does not exist."""


class Conflict(FlowledgerError):
    """The request contradicts what the ledger already holds."""


class InvalidInput(FlowledgerError):
    """Input was understood but is not acceptable; `problems` lists every reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ObjectStoreError(FlowledgerError):
    """The object store failed or does not hold the requested object."""


class CodecError(FlowledgerError):
    """A stored payload cannot be decoded: corrupt, truncated or the wrong dictionary."""


class Unauthorized(FlowledgerError):
    """The request carries no valid credentials (token, signature, session)."""


class Forbidden(FlowledgerError):
    """The caller is known but its role does not allow the action."""


class RateLimited(FlowledgerError):
    """Too many requests; `retry_after` says how many seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def require_one_of(name: str, value: str | None, allowed: Sequence[str]) -> None:
    """A filter that names no known value is an error, not an empty answer (a typo must not look like "none")."""
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
