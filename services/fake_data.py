"""Deterministic, realistic payloads for the demo and the compression benchmark."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# Compression ratios are only meaningful if the data looks like the real thing: the same key
# vocabulary across payloads (what a trained dictionary learns) but values that really vary.

FIRST_NAMES = (
    "Anna",
    "Ben",
    "Chloé",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiroshi",
    "Isabel",
    "Jonas",
    "Katarzyna",
    "Liam",
    "María",
    "Noah",
    "Olivia",
    "Pierre",
    "Quentin",
    "Rosa",
    "Sven",
    "Tomás",
    "Ursula",
    "Valentina",
    "Wei",
    "Xavier",
    "Yasmin",
    "Zoë",
    "Aarav",
    "Bianca",
    "Carlos",
    "Daniela",
)
LAST_NAMES = (
    "Andersson",
    "Bauer",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "García",
    "Hansen",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lefebvre",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Petrov",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ulrich",
    "Vasquez",
    "Walsh",
    "Yilmaz",
    "Zhang",
    "Novak",
    "Moreau",
)
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "acme-corp.example", "shop.example.io")
STREETS = (
    "Main Street",
    "Oak Avenue",
    "Rue de la Paix",
    "Hauptstraße",
    "Calle Mayor",
    "Station Road",
    "Baker Street",
    "Kungsgatan",
    "Via Roma",
    "Elm Drive",
    "Market Square",
    "Harbour Lane",
)
CITIES = (
    ("Paris", "75008", "FR"),
    ("Berlin", "10115", "DE"),
    ("Madrid", "28013", "ES"),
    ("London", "NW1 6XE", "GB"),
    ("Stockholm", "111 57", "SE"),
    ("Rome", "00184", "IT"),
    ("Lyon", "69002", "FR"),
    ("Munich", "80331", "DE"),
    ("Austin", "78701", "US"),
    ("Toronto", "M5V 2T6", "CA"),
    ("Amsterdam", "1012 JS", "NL"),
    ("Dublin", "D02 X285", "IE"),
)
CURRENCIES = ("EUR", "USD", "GBP", "SEK", "CHF")
PRODUCTS = (
    ("WID", "Widget"),
    ("GAD", "Gadget"),
    ("CAB", "USB-C cable 2m"),
    ("KBD", "Mechanical keyboard"),
    ("MON", "27in monitor"),
    ("CHR", "Office chair"),
    ("DSK", "Standing desk"),
    ("LMP", "Desk lamp"),
    ("HDS", "Wireless headset"),
    ("MSE", "Ergonomic mouse"),
    ("DOC", "Docking station"),
    ("SSD", "1TB NVMe SSD"),
    ("CAM", "HD webcam"),
    ("BAG", "Laptop backpack"),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Shopify-Captain-Hook",
)
TRIGGER_KINDS = ("order.created", "invoice.issued", "customer.updated", "payment.received")
STEP_KINDS = ("crm", "email", "invoice", "inventory", "payment", "http")
DOWNSTREAM = {
    "crm": "crm.example.com",
    "email": "mail.example.com",
    "invoice": "billing.example.com",
    "inventory": "erp.example.com",
    "payment": "pay.example.com",
    "http": "api.example.com",
}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def trigger_payload(rng: random.Random, *, kind: str = "order.created") -> dict[str, Any]:
    """Return a ~2 KB webhook body: customer, order with line items, invoice."""
    created = _timestamp(rng)
    customer = _customer(rng)
    order = _order(rng, currency=rng.choice(CURRENCIES), created=created)
    return {
        "id": f"evt_{_token(rng, 24)}",
        "type": kind,
        "created_at": _iso(created),
        "api_version": "2025-11-01",
        "livemode": rng.random() < 0.9,
        "source": rng.choice(("shopify", "woocommerce", "stripe", "internal-portal")),
        "data": {
            "customer": customer,
            "order": order,
            "invoice": _invoice(rng, order=order, issued=created),
        },
        "request": {"id": f"req_{_token(rng, 14)}", "idempotency_key": _uuid(rng)},
        "context": {
            "ip": f"198.51.100.{rng.randint(1, 254)}",
            "user_agent": rng.choice(USER_AGENTS),
            "locale": rng.choice(("fr-FR", "de-DE", "en-GB", "en-US", "es-ES", "sv-SE")),
            "referrer": rng.choice((None, "https://www.example.com/", f"https://ads.example.net/c/{_token(rng, 10)}")),
        },
        "note": rng.choice(
            (
                None,
                None,
                "Please leave the parcel at reception.",
                "Gift wrap, no invoice in box.",
                f"Call before delivery: {_phone(rng)}",
            )
        ),
    }


def step_payload(rng: random.Random, *, step_name: str, size_hint: int = 2048) -> dict[str, Any]:
    """Return a nested step input/output of roughly `size_hint` bytes of JSON (1–8 KB)."""
    kind = _step_kind(step_name)
    builder = _STEP_BUILDERS[kind]
    payload = builder(rng)
    # Grow with realistic repeated structures (records, events, items), never filler text.
    extras: list[dict[str, Any]] = payload.setdefault(_GROW_KEY[kind], [])
    while _approx_size(payload) < size_hint:
        extras.append(_GROW_ITEM[kind](rng))
    return payload


def error_message(rng: random.Random, *, step_name: str) -> str:
    """Return an error message as the downstream system behind `step_name` would phrase it."""
    kind = _step_kind(step_name)
    host = DOWNSTREAM[kind]
    choices = (
        lambda: f"HTTP 503 from {host}: Service Unavailable",
        lambda: f"HTTP 502 from {host}: Bad Gateway (upstream connect error)",
        lambda: f"timeout after {rng.choice((10, 30, 60))}s calling {kind}",
        lambda: f"HTTP 429 from {host}: rate limit exceeded, retry after {rng.randint(1, 120)}s",
        lambda: f"connection reset by peer while calling https://{host}/v2/{kind}",
        lambda: _specific_error(rng, kind, host),
        lambda: _specific_error(rng, kind, host),
    )
    return rng.choice(choices)()


def error_kind(message: str) -> str:
    """Classify an error message into a short family name for grouping."""
    lowered = message.lower()
    for needle, family in (
        ("timeout", "timeout"),
        ("429", "rate_limited"),
        ("503", "unavailable"),
        ("502", "bad_gateway"),
        ("connection reset", "network"),
        ("422", "validation"),
        ("409", "conflict"),
        ("401", "auth"),
        ("404", "not_found"),
    ):
        if needle in lowered:
            return family
    return "other"


def customer_id(rng: random.Random) -> str:
    """Return a customer id such as C-10234."""
    return f"C-{rng.randint(10000, 99999)}"


def order_number(rng: random.Random, *, year: int = 2026) -> str:
    """Return an order number such as ORD-2026-000123."""
    return f"ORD-{year}-{rng.randint(1, 999999):06d}"


def invoice_reference(rng: random.Random, *, year: int = 2026) -> str:
    """Return an invoice reference such as INV-2026-04817."""
    return f"INV-{year}-{rng.randint(1, 99999):05d}"


def _specific_error(rng: random.Random, kind: str, host: str) -> str:
    if kind == "invoice":
        return f"422 invalid invoice reference {invoice_reference(rng)}: unknown or already settled"
    if kind == "crm":
        return f"HTTP 409 from {host}: contact {customer_id(rng)} already exists (duplicate email)"
    if kind == "email":
        return f"HTTP 422 from {host}: recipient address rejected: {_email(rng, *_name(rng))}"
    if kind == "payment":
        return f"HTTP 402 from {host}: card declined (insufficient_funds) for {order_number(rng)}"
    if kind == "inventory":
        sku = _sku(rng)
        return f"HTTP 409 from {host}: insufficient stock for {sku} (requested {rng.randint(2, 9)}, available 1)"
    return f"HTTP 401 from {host}: token expired at {_iso(_timestamp(rng))}"


def _step_kind(step_name: str) -> str:
    lowered = step_name.lower()
    for kind in STEP_KINDS:
        if kind in lowered:
            return kind
    for needle, kind in (
        ("contact", "crm"),
        ("mail", "email"),
        ("notify", "email"),
        ("bill", "invoice"),
        ("stock", "inventory"),
        ("charge", "payment"),
        ("pay", "payment"),
    ):
        if needle in lowered:
            return kind
    return "http"


def _crm_response(rng: random.Random) -> dict[str, Any]:
    first, last = _name(rng)
    created = _timestamp(rng)
    return {
        "status": 200,
        "request_id": _uuid(rng),
        "contact": {
            "id": rng.randint(100000, 9999999),
            "external_id": customer_id(rng),
            "properties": {
                "firstname": first,
                "lastname": last,
                "email": _email(rng, first, last),
                "phone": _phone(rng),
                "company": f"{rng.choice(LAST_NAMES)} {rng.choice(('GmbH', 'SARL', 'Ltd', 'Inc.', 'AB'))}",
                "lifecyclestage": rng.choice(("lead", "customer", "opportunity", "subscriber")),
                "lead_score": rng.randint(0, 100),
                "createdate": _iso(created),
                "lastmodifieddate": _iso(created + timedelta(minutes=rng.randint(1, 90000))),
            },
            "associations": {"deals": [rng.randint(10**8, 10**9) for _ in range(rng.randint(0, 3))]},
        },
        "activities": [],
    }


def _crm_activity(rng: random.Random) -> dict[str, Any]:
    section = rng.choice(("pricing", "docs", "blog", "checkout"))
    return {
        "id": rng.randint(10**9, 10**10),
        "type": rng.choice(("EMAIL_OPEN", "PAGE_VIEW", "FORM_SUBMISSION", "DEAL_STAGE_CHANGE", "NOTE")),
        "timestamp": _iso(_timestamp(rng)),
        "owner_id": rng.randint(1000, 9999),
        "properties": {
            "url": f"https://www.example.com/{section}/{rng.randint(1, 400)}",
            "duration_ms": rng.randint(200, 600000),
            "campaign": rng.choice(("spring-sale", "newsletter-42", "onboarding", None)),
        },
    }


def _email_response(rng: random.Random) -> dict[str, Any]:
    first, last = _name(rng)
    return {
        "id": f"<{_token(rng, 20)}@mail.example.com>",
        "message": "Queued. Thank you.",
        "accepted": [_email(rng, first, last)],
        "rejected": [],
        "envelope": {"from": "no-reply@flowledger.example", "to": [_email(rng, first, last)]},
        "template": {
            "name": rng.choice(("order-confirmation", "invoice-reminder", "welcome", "shipping-update")),
            "version": rng.randint(1, 30),
            "variables": {"first_name": first, "order": order_number(rng), "total": _money(rng, 10, 4000)},
        },
        "events": [],
    }


def _email_event(rng: random.Random) -> dict[str, Any]:
    return {
        "event": rng.choice(("accepted", "delivered", "opened", "clicked", "deferred")),
        "timestamp": round(_timestamp(rng).timestamp() + rng.random(), 6),
        "recipient": _email(rng, *_name(rng)),
        "delivery-status": {
            "code": rng.choice((250, 250, 250, 421, 450)),
            "message": rng.choice(("OK", "2.0.0 Ok: queued", "4.7.0 Try again later")),
            "mx-host": f"mx{rng.randint(1, 4)}.{rng.choice(EMAIL_DOMAINS)}",
            "attempt-no": rng.randint(1, 3),
        },
        "ip": f"192.0.2.{rng.randint(1, 254)}",
    }


def _invoice_response(rng: random.Random) -> dict[str, Any]:
    issued = _timestamp(rng)
    order = _order(rng, currency=rng.choice(CURRENCIES), created=issued)
    order["items"] = []
    return {"invoice": _invoice(rng, order=order, issued=issued), "order": order, "customer": _customer(rng)}


def _inventory_response(rng: random.Random) -> dict[str, Any]:
    return {
        "warehouse": rng.choice(("PAR-1", "BER-2", "MAD-1", "LON-3", "AUS-1")),
        "checked_at": _iso(_timestamp(rng)),
        "reservation_id": _uuid(rng),
        "lines": [],
    }


def _inventory_line(rng: random.Random) -> dict[str, Any]:
    on_hand = rng.randint(0, 5000)
    return {
        "sku": _sku(rng),
        "on_hand": on_hand,
        "reserved": rng.randint(0, on_hand) if on_hand else 0,
        "reorder_point": rng.choice((10, 25, 50, 100)),
        "bin": f"{rng.choice('ABCDEFGH')}-{rng.randint(1, 40):02d}-{rng.randint(1, 12):02d}",
        "lot": f"LOT{rng.randint(202401, 202612)}-{rng.randint(1, 999):03d}",
    }


def _payment_response(rng: random.Random) -> dict[str, Any]:
    amount = rng.randint(500, 400000)
    return {
        "id": f"pi_{_token(rng, 24)}",
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": rng.choice(CURRENCIES).lower(),
        "status": rng.choice(("succeeded", "processing", "requires_action")),
        "created": int(_timestamp(rng).timestamp()),
        "customer": f"cus_{_token(rng, 14)}",
        "metadata": {"order_number": order_number(rng), "customer_id": customer_id(rng)},
        "payment_method": {
            "type": "card",
            "card": {
                "brand": rng.choice(("visa", "mastercard", "amex")),
                "last4": f"{rng.randint(0, 9999):04d}",
                "exp_month": rng.randint(1, 12),
                "exp_year": rng.randint(2026, 2032),
            },
        },
        "charges": [],
    }


def _payment_charge(rng: random.Random) -> dict[str, Any]:
    return {
        "id": f"ch_{_token(rng, 24)}",
        "amount": rng.randint(500, 400000),
        "balance_transaction": f"txn_{_token(rng, 24)}",
        "outcome": {
            "network_status": "approved_by_network",
            "risk_level": rng.choice(("normal", "elevated")),
            "risk_score": rng.randint(0, 99),
            "seller_message": "Payment complete.",
        },
        "receipt_url": f"https://pay.example.com/receipts/{_token(rng, 32)}",
    }


def _http_response(rng: random.Random) -> dict[str, Any]:
    return {
        "status": rng.choice((200, 200, 201, 202)),
        "headers": {
            "content-type": "application/json; charset=utf-8",
            "x-request-id": _uuid(rng),
            "date": _timestamp(rng).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "x-ratelimit-remaining": str(rng.randint(0, 5000)),
        },
        "body": {"page": rng.randint(1, 20), "per_page": 50, "results": []},
    }


def _http_record(rng: random.Random) -> dict[str, Any]:
    first, last = _name(rng)
    return {
        "id": _uuid(rng),
        "customer_id": customer_id(rng),
        "name": f"{first} {last}",
        "email": _email(rng, first, last),
        "updated_at": _iso(_timestamp(rng)),
        "tags": rng.sample(("vip", "b2b", "newsletter", "churn-risk", "trial", "eu", "us"), k=rng.randint(0, 3)),
        "balance": _money(rng, 0, 20000),
    }


_STEP_BUILDERS = {
    "crm": _crm_response,
    "email": _email_response,
    "invoice": _invoice_response,
    "inventory": _inventory_response,
    "payment": _payment_response,
    "http": _http_response,
}
_GROW_ITEM = {
    "crm": _crm_activity,
    "email": _email_event,
    "invoice": lambda rng: _line_item(rng, "EUR"),
    "inventory": _inventory_line,
    "payment": _payment_charge,
    "http": _http_record,
}
_GROW_KEY = {
    "crm": "activities",
    "email": "events",
    "invoice": "lines",
    "inventory": "lines",
    "payment": "charges",
    "http": "results",
}


def _approx_size(payload: dict[str, Any]) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


def _customer(rng: random.Random) -> dict[str, Any]:
    first, last = _name(rng)
    city, postcode, country = rng.choice(CITIES)
    return {
        "id": customer_id(rng),
        "email": _email(rng, first, last),
        "name": f"{first} {last}",
        "phone": _phone(rng),
        "address": {
            "line1": f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
            "line2": rng.choice((None, None, f"Apt {rng.randint(1, 80)}", f"Floor {rng.randint(1, 12)}")),
            "city": city,
            "postal_code": postcode,
            "country": country,
        },
        "tax_id": rng.choice((None, f"{country}{rng.randint(10**8, 10**9 - 1)}")),
        "marketing_opt_in": rng.random() < 0.4,
    }


def _order(rng: random.Random, *, currency: str, created: datetime) -> dict[str, Any]:
    items = [_line_item(rng, currency) for _ in range(rng.randint(2, 6))]
    subtotal = round(sum(item["total"] for item in items), 2)
    shipping = rng.choice((0.0, 4.9, 9.9, 14.5))
    tax = round(subtotal * rng.choice((0.2, 0.19, 0.21, 0.0825, 0.25)), 2)
    return {
        "number": order_number(rng, year=created.year),
        "created_at": _iso(created),
        "status": rng.choice(("paid", "pending", "fulfilled", "partially_refunded")),
        "currency": currency,
        "items": items,
        "amounts": {
            "subtotal": subtotal,
            "shipping": shipping,
            "tax": tax,
            "discount": rng.choice((0.0, 0.0, 5.0, round(subtotal * 0.1, 2))),
            "total": round(subtotal + shipping + tax, 2),
        },
        "shipping_method": rng.choice(("standard", "express", "pickup")),
    }


def _line_item(rng: random.Random, currency: str) -> dict[str, Any]:
    code, title = rng.choice(PRODUCTS)
    qty = rng.randint(1, 12)
    price = _money(rng, 2, 900)
    return {
        "id": rng.randint(10**7, 10**8),
        "sku": f"{code}-{rng.randint(100, 9999)}",
        "name": title,
        "qty": qty,
        "unit_price": price,
        "tax_rate": rng.choice((0.2, 0.19, 0.21, 0.0)),
        "currency": currency,
        "total": round(qty * price, 2),
        "requires_shipping": code != "DOC",
    }


def _invoice(rng: random.Random, *, order: dict[str, Any], issued: datetime) -> dict[str, Any]:
    return {
        "reference": invoice_reference(rng, year=issued.year),
        "order_number": order["number"],
        "issued_at": issued.date().isoformat(),
        "due_date": (issued + timedelta(days=rng.choice((14, 30, 45, 60)))).date().isoformat(),
        "amount_due": order["amounts"]["total"],
        "currency": order["currency"],
        "status": rng.choice(("open", "paid", "overdue", "draft")),
        "pdf_url": f"https://billing.example.com/invoices/{_token(rng, 16)}.pdf",
    }


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _email(rng: random.Random, first: str, last: str) -> str:
    local = f"{first}.{last}".lower().replace("'", "").replace(" ", "")
    local = local.encode("ascii", "ignore").decode() or "user"
    return f"{local}{rng.choice(('', '', str(rng.randint(1, 99))))}@{rng.choice(EMAIL_DOMAINS)}"


def _phone(rng: random.Random) -> str:
    return f"+{rng.choice((33, 49, 34, 44, 46, 39, 1))} {rng.randint(100, 999)} {rng.randint(100000, 999999)}"


def _sku(rng: random.Random) -> str:
    return f"{rng.choice(PRODUCTS)[0]}-{rng.randint(100, 9999)}"


def _money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def _timestamp(rng: random.Random) -> datetime:
    return EPOCH + timedelta(seconds=rng.randint(0, 180 * 86400), microseconds=rng.randint(0, 999) * 1000)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _token(rng: random.Random, length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rng.choice(alphabet) for _ in range(length))
