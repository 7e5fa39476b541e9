"""Step payloads skip the masking walk only when no key can match a rule: what is stored is the same."""
from __future__ import annotations

import json
import random
import uuid

import pytest

from services import codec, fake_data, payloads
from services.masking import DEFAULT_SENSITIVE_KEYS, mask_payload, may_apply
from services.objectstore import open_store
from services.payloads import PayloadConfig

KEYS = tuple(DEFAULT_SENSITIVE_KEYS)


@pytest.fixture
def cfg(tmp_path):
    return PayloadConfig(store=open_store("", local_root=tmp_path / "objects"), masking_keys=KEYS,
                         train_dictionaries=False)


def _stored(database, cfg, value, masking=((), ())) -> tuple[bytes, str]:
    with database.reader() as conn:
        prepared = payloads.prepare(conn, cfg, execution_id=uuid.uuid4(), kind="output", value=value,
                                    workflow_id="wf-masking", masking=masking)
    return codec.decode(prepared.row["data"]), prepared.ref.search_text


@pytest.mark.parametrize("value", [
    {"Pass-Word": "hunter2"},
    {"customer": {"API_KEY": "hunter2"}},
    {"items": [{"cardNumber": "hunter2"}]},
    {"pass\tword": "hunter2"},  # a separator that JSON writes as an escape
    {"pass\u000bword": "hunter2"},  # one it writes as \\u000b
    {"PAßWORD": "hunter2"},  # casefolds to "password"
    {"ſecret": "hunter2", "name": "García"},  # long s casefolds to "s", in text that is not ASCII
    {"pass\u00a0word": "hunter2"},  # a separator that is not ASCII
    {"\u212aey": 1, "access\u2028token": "hunter2"},
    {"body": '{"token": "hunter2"}'},  # a JSON document embedded in a string
    {"body": '{"a": "{\\"secret\\": \\"hunter2\\"}"}'},  # embedded twice
    {"body": '{"to\\u006ben": "hunter2"}'},  # an escape inside the embedded document
])
def test_a_key_a_rule_names_is_masked_in_the_stored_payload_and_its_search_text(database, cfg, value):
    stored, text = _stored(database, cfg, value)
    assert stored == codec.canonical_json(mask_payload(value, keys=KEYS))
    assert b"hunter2" not in stored and "hunter2" not in text


def test_a_workflow_key_or_path_rule_is_applied_on_top_of_the_global_keys(database, cfg):
    value = {"customer": {"email": "a@example.com", "pin": "1234"}, "note": "kept"}
    stored, text = _stored(database, cfg, value, masking=(("pin",), ("customer.email",)))
    assert json.loads(stored) == {"customer": {"email": "***", "pin": "***"}, "note": "kept"}
    assert "1234" not in text and "a@example.com" not in text


def test_realistic_step_payloads_are_stored_exactly_as_the_full_walk_masks_them(database, cfg):
    rng = random.Random(7)
    skipped = 0
    for _ in range(40):
        value = fake_data.step_payload(rng, step_name="sync_order", size_hint=rng.randint(1024, 8192))
        stored, _ = _stored(database, cfg, value)
        assert stored == codec.canonical_json(mask_payload(value, keys=KEYS))
        skipped += not may_apply(codec.canonical_text(value), KEYS)
    assert skipped > 0  # the fast path is taken for some of them, so the equality above covers it


def test_a_rule_name_that_is_not_ascii_catches_its_key_in_any_case(database, cfg):
    stored, _ = _stored(database, cfg, {"CONTRASEÑA": "hunter2", "nombre": "Ana"}, masking=(("contraseña",), ()))
    assert json.loads(stored) == {"CONTRASEÑA": "***", "nombre": "Ana"}


def test_no_character_past_u_ffff_normalises_into_part_of_an_ascii_name():
    """may_apply reads text without any of _FOLDS_TO_ASCII like its bytes; it lists the BMP only."""
    assert not [c for c in range(0x10000, 0x110000)
                if chr(c).isspace() or any(x.isascii() for x in chr(c).casefold())]


def test_casefolding_never_makes_or_removes_a_separator():
    """may_apply casefolds text without separators outside ASCII first, then drops ASCII separators as bytes."""
    separators = {"-", "_"} | {chr(c) for c in range(0x3001) if chr(c).isspace()}
    assert not [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF
                and ((chr(c) in separators) != any(x in separators for x in chr(c).casefold())
                     or (chr(c) in separators and chr(c).casefold() != chr(c)))]


@pytest.mark.parametrize("text,found", [
    ('{"Straße": "Hauptstraße 5", "note": "x"}', False),
    ('{"Straße": "Hauptstraße 5", "PASS-WORD": "hunter2"}', True),
    ('{"Straße": 1, "ﬁle": 2, "\u212aey": 3}', False),  # K (Kelvin) + ey is "key", not a rule
    ('{"Straße": 1, "access\u00a0token": "hunter2"}', True),  # a separator outside ASCII: the full path
])
def test_text_with_characters_that_fold_into_ascii_is_judged_like_the_walk(text, found):
    keys = ("password", "access_token", "token")
    assert may_apply(text, keys) is found
    value = json.loads(text)
    assert (mask_payload(value, keys=keys) != value) is found
