"""API JSON: ISO timestamps, UUID strings, base64 bytes, and stored payload JSON spliced in unparsed."""
import datetime as dt
import json
import uuid

from app.jsonio import dumps
from services.payloads import RawJSON


def test_raw_json_values_are_spliced_in_verbatim_wherever_they_sit():
    document = {"a": RawJSON(b'{"x":1,"y":[true,null]}'), "b": [RawJSON("\"Zürich ✓\"".encode()), 2],
                "c": {"deep": RawJSON(b"3.5")}}
    text = dumps(document, separators=(",", ":"))
    assert '"a":{"x":1,"y":[true,null]}' in text and "Zürich ✓" in text
    assert json.loads(text) == {"a": {"x": 1, "y": [True, None]}, "b": ["Zürich ✓", 2], "c": {"deep": 3.5}}


def test_text_that_looks_like_the_splice_marker_stays_text():
    lookalike = "\\u0000rawjson:0"
    text = dumps({"message": lookalike, "payload": RawJSON(b'{"k":"v"}')})
    assert json.loads(text) == {"message": lookalike, "payload": {"k": "v"}}


def test_timestamps_uuids_and_bytes_keep_their_api_forms():
    key = uuid.uuid4()
    at = dt.datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=dt.UTC)
    assert json.loads(dumps({"id": key, "at": at, "blob": b"\x00\x01"})) == {
        "id": str(key), "at": "2026-11-20T10:00:00.123000+00:00", "blob": "AAE="}


def test_the_app_answers_with_the_splicing_provider(app):
    with app.app_context():
        body = app.json.response({"p": RawJSON(b'{"n":1}'), "ok": True}).get_data(as_text=True)
    assert json.loads(body) == {"p": {"n": 1}, "ok": True}
