"""JSON for the API: ISO 8601 timestamps, UUIDs as strings, bytes as base64."""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any

from flask.json.provider import DefaultJSONProvider


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
