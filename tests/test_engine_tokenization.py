"""Chapter 9's exported reference passes its own checks, and keeps the promises the
server relies on: ids identical to tiktoken on the same ranks over the course corpus and
over random code points from every plane (lone surrogates included), whatever the cache
does; no text a user can type becomes a control token; the streaming decoder's output
joins up to ``decode`` on every stream."""
from __future__ import annotations

import random

import pytest

from tinygpt.checks import ch09 as checks
from tinygpt.corpus import course_corpus
from tinygpt.engine.tokenization import (ChunkCache, Encoder, StreamDecoder, byte_pair_merge,
                                         incomplete_tail, split_specials)
from tinygpt.tokenizer.control import CONTROL_TOKENS
from conftest import reference_tests

REFERENCE = [
    (checks.check_byte_pair_merge, (byte_pair_merge,)),
    (checks.check_split_specials, (split_specials,)),
    (checks.check_chunk_cache, (ChunkCache,)),
    (checks.check_encoder, (Encoder,)),
    (checks.check_incomplete_tail, (incomplete_tail,)),
    (checks.check_stream_decoder, (StreamDecoder,)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(12))


@pytest.fixture(scope="module")
def tok():
    return checks.course_tokenizer()


def _random_code_points(rng: random.Random, n: int) -> str:
    """Code points from every plane, surrogates (lone, or a pair as two code points) included."""
    ranges = [(0, 0x80), (0x80, 0x800), (0x800, 0x10000), (0xD800, 0xE000), (0x10000, 0x110000),
              (0x300, 0x370)]  # the last: combining marks
    return "".join(chr(rng.randrange(*rng.choice(ranges))) for _ in range(n))


@pytest.mark.parametrize("cache_size", [0, 3, 65536])
def test_ids_equal_tiktoken_on_the_course_corpus(tok, cache_size):
    text = course_corpus(400_000)[-150_000:]  # past the 150 kB the tokenizer was trained on
    want = tok.to_tiktoken().encode_ordinary(text)
    assert Encoder(tok, cache_size).encode_ordinary(text) == want
    assert Encoder(tok).encode(text, allowed_special="all") == \
        tok.to_tiktoken().encode(text, allowed_special="all")


def test_ids_equal_tiktoken_on_random_code_points(tok):
    rng, enc, encoder = random.Random(0), tok.to_tiktoken(), Encoder(tok, 64)
    for _ in range(300):
        text = _random_code_points(rng, rng.randrange(0, 40))
        assert encoder.encode_ordinary(text) == enc.encode_ordinary(text), ascii(text)


def test_rank_replay_agrees_with_chapter_2s_pair_replay(tok):
    text = course_corpus(300_000)[-100_000:]
    assert Encoder(tok).encode_ordinary(text) == tok.encode_ordinary(text)


def test_no_typed_text_becomes_a_control_token(tok):
    rng, encoder = random.Random(1), Encoder(tok)
    control = set(tok.special_tokens.values())
    for _ in range(200):
        parts = rng.choices(list(CONTROL_TOKENS) + ["<|", "|>", "end", " ", "x"], k=rng.randrange(1, 12))
        text = "".join(parts)
        assert not control & set(encoder.encode(text)), text
        assert encoder.encode(text, allowed_special="all") == \
            tok.encode(text, allowed_special="all"), text


def test_a_warm_cache_hits_on_repeated_text(tok):
    encoder = Encoder(tok)
    text = course_corpus(50_000)
    encoder.encode_ordinary(text)
    misses = encoder.cache.misses
    encoder.encode_ordinary(text)
    assert encoder.cache.misses == misses and encoder.cache.hits > misses


def test_a_bounded_cache_stays_bounded(tok):
    encoder = Encoder(tok, 100)
    encoder.encode_ordinary(course_corpus(50_000))
    assert len(encoder.cache) == 100


def test_streaming_the_running_example_never_shows_a_replacement_character(tok):
    text = "The bank by the river \U0001f3e6\U0001f30a had no money: caf\u00e9, \u6cb3\u8fb9."
    ids = tok.encode_ordinary(text)
    stream = StreamDecoder(tok)
    pieces = [stream.push(i) for i in ids]
    assert "\ufffd" not in "".join(pieces) and "".join(pieces) + stream.flush() == text
    naive = [tok.decode([i]) for i in ids]
    assert "\ufffd" in "".join(naive)  # decoding token by token does break a character here


def test_every_split_of_random_bytes_streams_to_decode(tok):
    rng = random.Random(2)
    for _ in range(100):
        ids = [rng.randrange(256) for _ in range(rng.randrange(0, 12))]
        stream = StreamDecoder(tok)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == tok.decode(ids)
