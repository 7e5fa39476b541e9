"""JSON for the API: ISO 8601 timestamps, UUIDs as strings, bytes as base64, stored JSON spliced in as is."""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import uuid
from typing import Any

from flask.json.provider import DefaultJSONProvider

from services.payloads import RawJSON

# What default() leaves in the text where a RawJSON goes. Every other string in a response comes from
# PostgreSQL text or jsonb, which cannot hold U+0000, so this marker cannot occur in data.
_MARK = "\x00rawjson:"
_MARKED = re.compile(r'"\\u0000rawjson:(\d+)"')


class ApiJSONProvider(DefaultJSONProvider):
    """Flask's provider with ISO timestamps instead of HTTP dates."""

    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, dt.datetime | dt.date):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, decimal.Decimal):
            return float(o)
        if isinstance(o, bytes | memoryview):
            return base64.b64encode(bytes(o)).decode()
        return DefaultJSONProvider.default(o)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialise obj; RawJSON values (stored payload text) go into the output without a parse and re-encode."""
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        return dumps(obj, default=kwargs.pop("default", self.default), **kwargs)


def dumps(obj: Any, *, default: Any = ApiJSONProvider.default, **kwargs: Any) -> str:
    """json.dumps with the API's conversions, splicing each RawJSON in verbatim (it is already JSON)."""
    raws: list[RawJSON] = []

    def encode(o: Any) -> Any:
        if isinstance(o, RawJSON):
            raws.append(o)
            return f"{_MARK}{len(raws) - 1}"
        return default(o)

    text = json.dumps(obj, default=encode, **kwargs)
    if not raws:
        return text
    parts = _MARKED.split(text)
    # split() alternates text and captured indexes: text, index, text, ..., text.
    parts[1::2] = [raws[int(i)].decode("utf-8") for i in parts[1::2]]
    return "".join(parts)
