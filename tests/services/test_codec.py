"""Step payloads are stored zstd-compressed, optionally with a trained dictionary."""

from __future__ import annotations

import random
import threading

import pytest
import zstandard

from services import codec, fake_data, masking
from services.errors import CodecError

STEPS = ("crm_upsert", "send_email", "create_invoice", "check_stock", "charge_card")


def _samples(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        codec.canonical_json(
            fake_data.step_payload(rng, step_name=STEPS[i % len(STEPS)], size_hint=rng.randint(1024, 8192))
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def dictionary() -> zstandard.ZstdCompressionDict:
    return codec.load_dictionary(codec.train_dictionary(_samples(1, 400), dict_id=4242))


def test_canonical_json_is_compact_utf8_and_keeps_key_order() -> None:
    assert codec.canonical_json({"b": 1, "a": [1, "é"]}) == '{"b":1,"a":[1,"é"]}'.encode()


def test_canonical_json_refuses_nan_because_it_is_not_json() -> None:
    with pytest.raises(ValueError):
        codec.canonical_json({"x": float("nan")})


def test_sha256_hex_matches_the_known_digest_of_empty_input() -> None:
    assert codec.sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_plain_payloads_round_trip() -> None:
    for data in [b"", b"x", *_samples(2, 20)]:
        assert codec.decode(codec.encode(data)) == data


def test_dictionary_compressed_payloads_round_trip(dictionary: zstandard.ZstdCompressionDict) -> None:
    for data in _samples(3, 50):
        assert codec.decode(codec.encode(data, dictionary=dictionary), dictionary=dictionary) == data


def test_a_dictionary_makes_fake_payloads_smaller(dictionary: zstandard.ZstdCompressionDict) -> None:
    samples = _samples(4, 100)
    raw = sum(map(len, samples))
    plain = sum(len(codec.encode(data)) for data in samples)
    with_dict = sum(len(codec.encode(data, dictionary=dictionary)) for data in samples)
    assert with_dict < plain * 0.85
    assert raw / with_dict > 4


def test_a_frame_names_the_dictionary_it_needs(dictionary: zstandard.ZstdCompressionDict) -> None:
    assert codec.dictionary_id(dictionary) == 4242
    assert codec.frame_dictionary_id(codec.encode(b"{}", dictionary=dictionary)) == 4242
    assert codec.frame_dictionary_id(codec.encode(b"{}")) == 0


def test_decoding_without_the_dictionary_fails_loudly(dictionary: zstandard.ZstdCompressionDict) -> None:
    blob = codec.encode(_samples(5, 1)[0], dictionary=dictionary)
    with pytest.raises(CodecError, match="4242"):
        codec.decode(blob)


def test_decoding_with_another_dictionary_fails_loudly(dictionary: zstandard.ZstdCompressionDict) -> None:
    other = codec.load_dictionary(codec.train_dictionary(_samples(6, 300), dict_id=7))
    with pytest.raises(CodecError):
        codec.decode(codec.encode(b'{"a":1}', dictionary=dictionary), dictionary=other)


def test_a_corrupt_payload_raises_codec_error() -> None:
    blob = bytearray(codec.encode(_samples(8, 1)[0]))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(CodecError):
        codec.decode(bytes(blob))
    with pytest.raises(CodecError):
        codec.decode(b"not zstd at all")


def test_a_reloaded_dictionary_reuses_the_cached_context(dictionary: zstandard.ZstdCompressionDict) -> None:
    reloaded = codec.load_dictionary(dictionary.as_bytes())
    data = _samples(9, 1)[0]
    assert codec.decode(codec.encode(data, dictionary=reloaded), dictionary=dictionary) == data


def test_two_different_dictionaries_with_one_id_are_refused(dictionary: zstandard.ZstdCompressionDict) -> None:
    impostor = codec.load_dictionary(codec.train_dictionary(_samples(10, 300), dict_id=4242))
    local = codec.Codec()
    local.encode(b"{}", dictionary=dictionary)
    with pytest.raises(CodecError, match="share id 4242"):
        local.encode(b"{}", dictionary=impostor)


def test_training_without_samples_raises_codec_error() -> None:
    with pytest.raises(CodecError):
        codec.train_dictionary([])


def test_one_codec_is_safe_to_share_between_threads(dictionary: zstandard.ZstdCompressionDict) -> None:
    shared = codec.Codec()
    samples = _samples(11, 40)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                for data in samples:
                    assert shared.decode(shared.encode(data, dictionary=dictionary), dictionary=dictionary) == data
        except BaseException as exc:  # collected for the main thread to report
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_context_cache_stays_bounded() -> None:
    small = codec.Codec(max_cached=2)
    dictionaries = [
        codec.load_dictionary(codec.train_dictionary(_samples(20 + i, 200), size=8192, dict_id=100 + i))
        for i in range(3)
    ]
    for dictionary in dictionaries:
        small.encode(b"{}", dictionary=dictionary)
    assert len(small._cache()) == 2


def test_masked_keys_never_appear_in_the_encoded_bytes(dictionary: zstandard.ZstdCompressionDict) -> None:
    secret = "sk_live_51HqQ2xTOPSECRETvalue9876"
    payload = fake_data.step_payload(random.Random(12), step_name="charge_card", size_hint=4096)
    payload["request"] = {"headers": {"Authorization": f"Bearer {secret}"}, "body": f'{{"api_key": "{secret}"}}'}
    payload["charges"][0]["card_number"] = "4242424242424242"
    masked = masking.mask_payload(payload, keys=masking.DEFAULT_SENSITIVE_KEYS)
    for blob in (
        codec.encode(codec.canonical_json(masked)),
        codec.encode(codec.canonical_json(masked), dictionary=dictionary),
    ):
        decoded = codec.decode(blob, dictionary=dictionary if codec.frame_dictionary_id(blob) else None)
        for needle in (secret.encode(), b"4242424242424242"):
            assert needle not in blob
            assert needle not in decoded
