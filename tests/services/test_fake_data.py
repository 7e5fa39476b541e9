"""Fake data is deterministic and realistic enough for compression ratios to mean something."""

from __future__ import annotations

import random
import re

import pytest

from services import codec, fake_data

STEPS = ("crm_upsert", "send_email", "create_invoice", "check_stock", "charge_card", "fetch_orders")


def test_the_same_seed_gives_the_same_payloads() -> None:
    def batch(seed: int) -> list[bytes]:
        rng = random.Random(seed)
        return [
            codec.canonical_json(fake_data.trigger_payload(rng, kind="order.created")),
            codec.canonical_json(fake_data.step_payload(rng, step_name="crm_upsert", size_hint=3000)),
            fake_data.error_message(rng, step_name="send_email").encode(),
        ]

    assert batch(1) == batch(1)
    assert batch(1) != batch(2)


def test_a_trigger_payload_is_about_two_kilobytes_with_customer_order_and_invoice() -> None:
    rng = random.Random(3)
    sizes = []
    for _ in range(50):
        payload = fake_data.trigger_payload(rng, kind="order.created")
        sizes.append(len(codec.canonical_json(payload)))
        data = payload["data"]
        assert re.fullmatch(r"C-\d{5}", data["customer"]["id"])
        assert "@" in data["customer"]["email"]
        assert {"line1", "city", "postal_code", "country"} <= data["customer"]["address"].keys()
        assert re.fullmatch(r"ORD-2026-\d{6}", data["order"]["number"])
        assert all({"sku", "qty", "unit_price"} <= item.keys() for item in data["order"]["items"])
        assert re.fullmatch(r"INV-2026-\d{5}", data["invoice"]["reference"])
        assert data["invoice"]["due_date"] > data["invoice"]["issued_at"]
    assert 1500 <= sum(sizes) / len(sizes) <= 2600


@pytest.mark.parametrize("step_name", STEPS)
@pytest.mark.parametrize("size_hint", [1024, 4096, 8192])
def test_a_step_payload_lands_near_its_size_hint(step_name: str, size_hint: int) -> None:
    size = len(codec.canonical_json(fake_data.step_payload(random.Random(4), step_name=step_name, size_hint=size_hint)))
    assert size_hint * 0.5 <= size <= size_hint + 2500


def test_payloads_are_not_repeated_constant_strings() -> None:
    rng = random.Random(5)
    payloads = [
        codec.canonical_json(fake_data.step_payload(rng, step_name="crm_upsert", size_hint=4096)) for _ in range(20)
    ]
    assert len(set(payloads)) == 20
    # Realistic JSON compresses a few times, not a hundred: guard against filler text.
    ratio = sum(map(len, payloads)) / sum(len(codec.encode(data)) for data in payloads)
    assert 2 < ratio < 8


@pytest.mark.parametrize(
    ("step_name", "names"),
    [
        ("send_email", ("mail",)),
        ("crm_upsert", ("crm",)),
        ("create_invoice", ("billing", "invoice")),
        ("charge_card", ("pay",)),
    ],
)
def test_error_messages_name_the_downstream_system(step_name: str, names: tuple[str, ...]) -> None:
    rng = random.Random(6)
    messages = {fake_data.error_message(rng, step_name=step_name) for _ in range(60)}
    assert len(messages) > 10
    assert all(any(name in message for name in names) for message in messages)


def test_error_kinds_group_messages_by_family() -> None:
    assert fake_data.error_kind("HTTP 503 from mail.example.com: Service Unavailable") == "unavailable"
    assert fake_data.error_kind("timeout after 30s calling crm") == "timeout"
    assert fake_data.error_kind("422 invalid invoice reference INV-2026-00042") == "validation"
