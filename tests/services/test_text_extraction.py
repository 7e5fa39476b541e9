"""What becomes searchable text: distinct values once, no timestamps or amounts, never a masked value."""
from services.text_extraction import SEPARATOR, search_text, step_text


def test_each_distinct_value_is_kept_once_in_document_order():
    payload = {"customer": {"id": "C-123", "email": "ana@example.org"},
               "lines": [{"sku": "SKU-9"}, {"sku": "SKU-9"}, {"sku": "SKU-10"}], "owner": "C-123"}

    assert search_text(payload).split(SEPARATOR) == ["C-123", "ana@example.org", "SKU-9", "SKU-10"]


def test_timestamps_booleans_and_amounts_are_left_out_but_long_ids_stay():
    payload = {"at": "2026-04-20T13:16:36.707Z", "day_time": "2026-04-20 13:16", "paid": True, "amount": 421.21,
               "qty": 3, "shopify_order_id": 450789469, "note": "delivered 2026-04-20"}

    assert search_text(payload).split(SEPARATOR) == ["450789469", "delivered 2026-04-20"]


def test_masked_values_never_become_text():
    assert search_text({"password": "***", "user": "bob"}) == "bob"


def test_whitespace_inside_a_value_is_folded_so_values_split_back_cleanly():
    assert search_text({"message": "card\n declined\tby bank"}) == "card declined by bank"


def test_step_text_keeps_a_value_seen_in_input_and_output_once_and_the_error_whole():
    inp = search_text({"order": "ORD-1", "customer": "C-7"})
    out = search_text({"order": "ORD-1", "status": "Bad"})

    text = step_text([inp, out, "502 Bad Gateway from billing"])

    assert text.split(SEPARATOR) == ["ORD-1", "C-7", "Bad", "502 Bad Gateway from billing"]


def test_a_step_without_text_stores_none():
    assert step_text(["", None]) is None
