"""Sensitive values are replaced before anything is stored; credentials never survive."""

from __future__ import annotations

import copy
import json
import random

import pytest

from services import codec, fake_data
from services.masking import (
    DEFAULT_SENSITIVE_KEYS,
    MASK,
    compile_path,
    mask_headers,
    mask_payload,
    masked_paths,
    normalise_key,
)

SECRET = "s3cr3t-VALUE-never-stored"


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_keys_match_case_insensitively_anywhere_in_the_tree() -> None:
    payload = {"Authorization": SECRET, "deep": [{"x": {"AUTHORIZATION": SECRET, "keep": 1}}]}
    assert mask_payload(payload, keys=["authorization"]) == {
        "Authorization": MASK,
        "deep": [{"x": {"AUTHORIZATION": MASK, "keep": 1}}],
    }


@pytest.mark.parametrize("spelling", ["api-key", "api_key", "API_KEY", "Api-Key", "apiKey", "api key"])
def test_dashes_underscores_and_case_do_not_matter(spelling: str) -> None:
    assert mask_payload({spelling: SECRET}, keys=["api-key"]) == {spelling: MASK}


def test_a_matched_key_masks_its_whole_subtree() -> None:
    payload = {"credentials": {"user": "bob", "password": SECRET, "scopes": [SECRET]}}
    assert mask_payload(payload, keys=["credentials"]) == {"credentials": MASK}


def test_credentials_never_survive_in_nested_lists_and_dicts() -> None:
    payload = {
        "steps": [
            {"request": {"headers": [{"Authorization": f"Bearer {SECRET}"}], "query": {"token": SECRET}}},
            [[{"client_secret": SECRET}], {"nested": [{"Password": SECRET}]}],
        ],
        "tuple": ({"x-api-key": SECRET},),
    }
    masked = mask_payload(payload, keys=DEFAULT_SENSITIVE_KEYS)
    assert SECRET not in json.dumps(masked)
    assert all(SECRET not in str(leaf) for leaf in _leaves(masked))


def test_masking_returns_a_copy_and_leaves_the_input_alone() -> None:
    payload = {"a": {"password": SECRET, "list": [1, 2]}}
    before = copy.deepcopy(payload)
    masked = mask_payload(payload, keys=["password"])
    masked["a"]["list"].append(3)
    assert payload == before


def test_dotted_paths_mask_exactly_that_field() -> None:
    payload = {"customer": {"email": "a@example.com", "name": "Ann"}, "email": "kept@example.com"}
    assert mask_payload(payload, keys=[], paths=["customer.email"]) == {
        "customer": {"email": MASK, "name": "Ann"},
        "email": "kept@example.com",
    }


def test_paths_reach_into_every_list_item_with_a_wildcard() -> None:
    payload = {"items": [{"card_number": "4111", "sku": "A"}, {"card_number": "4242", "sku": "B"}]}
    for path in ("items[*].card_number", "$.items[*].card_number", "items.card_number"):
        masked = mask_payload(payload, keys=[], paths=[path])
        assert masked == {"items": [{"card_number": MASK, "sku": "A"}, {"card_number": MASK, "sku": "B"}]}


def test_paths_can_name_one_index_a_wildcard_key_or_a_quoted_key() -> None:
    payload = {
        "items": [{"pan": "1"}, {"pan": "2"}],
        "vault": {"a": {"pin": 1}, "b": {"pin": 2}},
        "odd": {"key.with.dots": SECRET},
    }
    masked = mask_payload(payload, keys=[], paths=["items[1].pan", "vault.*.pin", "odd['key.with.dots']"])
    assert masked["items"] == [{"pan": "1"}, {"pan": MASK}]
    assert masked["vault"] == {"a": {"pin": MASK}, "b": {"pin": MASK}}
    assert masked["odd"] == {"key.with.dots": MASK}


def test_a_path_that_does_not_exist_changes_nothing() -> None:
    payload = {"customer": {"name": "Ann"}, "n": [1, 2]}
    assert mask_payload(payload, keys=[], paths=["customer.email", "n[5]", "nothing.here"]) == payload


def test_key_patterns_catch_vendor_specific_names() -> None:
    payload = {"x_stripe_token": SECRET, "token_count": 3, "session": {"refreshTokenValue": SECRET}}
    masked = mask_payload(payload, keys=["*token*"])
    assert SECRET not in json.dumps(masked)


def test_secrets_inside_a_json_string_body_are_masked_too() -> None:
    body = json.dumps({"user": "ann", "password": SECRET})
    masked = mask_payload({"response": {"body": body}}, keys=["password"])
    assert SECRET not in masked["response"]["body"]
    assert json.loads(masked["response"]["body"]) == {"user": "ann", "password": MASK}


def test_a_json_string_without_secrets_is_kept_byte_for_byte() -> None:
    body = '{ "user" : "ann" }'
    assert mask_payload({"body": body}, keys=["password"]) == {"body": body}


def test_masked_paths_lists_what_was_replaced() -> None:
    payload = {"headers": {"Authorization": "x"}, "items": [{"card_number": 1}, {"card_number": 2}]}
    assert masked_paths(payload, keys=["authorization"], paths=["items[*].card_number"]) == [
        "headers.Authorization",
        "items[0].card_number",
        "items[1].card_number",
    ]


def test_headers_are_masked_by_name_whatever_their_case() -> None:
    headers = {"Content-Type": "application/json", "authorization": "Bearer x", "X-API-KEY": "k", "Set-Cookie": "sid=1"}
    assert mask_headers(headers, keys=DEFAULT_SENSITIVE_KEYS) == {
        "Content-Type": "application/json",
        "authorization": MASK,
        "X-API-KEY": MASK,
        "Set-Cookie": MASK,
    }


@pytest.mark.parametrize("path", ["", "$", "a..b", "a.", "a[x]", "a[*"])
def test_malformed_paths_are_rejected(path: str) -> None:
    with pytest.raises(ValueError):
        compile_path(path)


def test_a_single_string_of_keys_is_refused_rather_than_read_letter_by_letter() -> None:
    with pytest.raises(TypeError):
        mask_payload({"a": 1}, keys="password")


def test_normalise_key_drops_separators_and_case() -> None:
    assert normalise_key("X-Api_Key") == normalise_key("xapikey") == "xapikey"


def test_masking_realistic_payloads_keeps_everything_else() -> None:
    payload = fake_data.trigger_payload(random.Random(1), kind="order.created")
    masked = mask_payload(payload, keys=["email"], paths=["data.customer.address"])
    assert masked["data"]["customer"]["email"] == MASK
    assert masked["data"]["customer"]["address"] == MASK
    masked["data"]["customer"]["email"] = payload["data"]["customer"]["email"]
    masked["data"]["customer"]["address"] = payload["data"]["customer"]["address"]
    assert codec.canonical_json(masked) == codec.canonical_json(payload)
