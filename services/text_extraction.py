"""What of a payload becomes searchable free text: each distinct string once, after masking.

Left out, because nobody looks for them by free text and they made up about half of the text
and most of the full-text index: ISO timestamps (time filters answer those), booleans, and
numbers shorter than five digits or with a fraction (amounts, counts, quantities). Long whole
numbers stay, because order and account ids are often numeric. Masked values ("***") never
reach the text, so they can never be found.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

SEARCH_TEXT_LIMIT = 65536
MASKED = "***"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?(\.\d+)?(Z|[+-]\d\d:?\d\d)?")
MIN_NUMBER_DIGITS = 5
# Values are joined by newlines (whitespace inside a value is folded to single spaces), so a step's
# text can be split back into values and a value repeated between input and output is kept once.
SEPARATOR = "\n"


def search_text(value: Any) -> str:
    """The searchable words of one payload: distinct string leaves and id-like numbers, in order."""
    seen: dict[str, None] = {}
    size = 0
    stack = [value]
    while stack and size < SEARCH_TEXT_LIMIT:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        else:
            token = _token(item)
            if token and token not in seen:
                seen[token] = None
                size += len(token) + 1
    return SEPARATOR.join(seen)[:SEARCH_TEXT_LIMIT]


def step_text(parts: Iterable[str | None]) -> str | None:
    """One step's text from its payloads' texts and error: a value seen in the input is not repeated."""
    seen: dict[str, None] = {}
    for part in parts:
        for value in (part or "").split(SEPARATOR):
            if value:
                seen.setdefault(value, None)
    return SEPARATOR.join(seen)[:SEARCH_TEXT_LIMIT] or None


def _token(item: Any) -> str | None:
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int):
        return str(item) if len(str(abs(item))) >= MIN_NUMBER_DIGITS else None
    if isinstance(item, str):
        text = " ".join(item.split())
        if not text or text == MASKED or TIMESTAMP.fullmatch(text):
            return None
        return text
    return None
