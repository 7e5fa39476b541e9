"""A per-process counter of credential changes, so cached 'open mode' answers refresh at once."""
from __future__ import annotations

import itertools

_counter = itertools.count(1)
_generation = 0


def changed() -> None:
    """Record that a user or token was created in this process."""
    global _generation
    _generation = next(_counter)


def generation() -> int:
    """The current credentials generation."""
    return _generation
