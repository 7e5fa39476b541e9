"""Ingestion in memory: the JSONB query copy skips masking only when no key can match a rule."""
from __future__ import annotations

import json
import random

import pytest

from services import events, fake_data
from services.events import IncomingEvent
from services.masking import DEFAULT_SENSITIVE_KEYS, mask_payload

KEYS = tuple(DEFAULT_SENSITIVE_KEYS)


def _copy(body: bytes, keys=KEYS, paths=()) -> str | None:
    return events.prepare(IncomingEvent(source_system="s", body=body), max_depth=200, masking=(keys, paths)).jsonb


@pytest.mark.parametrize("body", [
    b'{"Pass-Word": "hunter2"}',
    b'{"customer": {"API_KEY": "k-1"}}',
    b'{"items": [{"cardNumber": "4111"}]}',
    b'{"pass\\u0077ord": "hunter2"}',  # an escaped letter
    b'{"pass\\tword": "hunter2"}',  # an escaped separator, dropped when keys are compared
    b'{"body": "{\\"token\\": \\"t-1\\"}"}',  # a JSON document embedded in a string
    b'{"body": "{\\"a\\": \\"{\\\\\\"secret\\\\\\": 1}\\"}"}',  # embedded twice
    b'{"\\u0050ASSWORD": "hunter2"}',
])
def test_a_key_that_masking_would_catch_is_always_masked_in_the_query_copy(body):
    copy = json.loads(_copy(body))
    assert copy == mask_payload(json.loads(body), keys=KEYS)
    assert copy != json.loads(body)


def test_a_body_without_sensitive_keys_is_stored_as_its_own_text_without_re_serialising():
    body = b'{"amount": 12345678901234567890.123456789, "note": "caf\\u00e9", "tokens_used": false}'
    # "tokens_used" is not the key "token": the full walk runs (the text mentions the name) and masks nothing.
    assert json.loads(_copy(body)) == json.loads(body)
    plain = b'{"amount": 12345678901234567890.123456789, "b": 1}'
    assert _copy(plain) == plain.decode()  # PostgreSQL keeps the number's every digit


def test_realistic_trigger_payloads_take_the_fast_path_and_match_the_full_walk():
    for seed in range(30):
        body = json.dumps(fake_data.trigger_payload(random.Random(seed))).encode()
        assert json.loads(_copy(body)) == mask_payload(json.loads(body), keys=KEYS)


def test_path_rules_and_glob_patterns_always_take_the_full_walk():
    body = b'{"customer": {"email": "a@example.com"}, "x_secret_y": 1}'
    assert json.loads(_copy(body, keys=(), paths=("customer.email",)))["customer"]["email"] == "***"
    assert json.loads(_copy(body, keys=("*secret*",)))["x_secret_y"] == "***"


def test_rejected_bodies_have_no_query_copy():
    assert _copy(b"not json") is None
    assert _copy(b'{"a": "\\u0000"}') is None
