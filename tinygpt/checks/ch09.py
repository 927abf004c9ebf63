"""Property checks for chapter 9 (tokenization at inference), written once and run against
anyone's code.

Notebook test cells call these on the learner's functions and classes (visible cells
with seed 0, hidden cells with fresh seeds); pytest calls the same checks on the
exported reference. The oracles are independent of the reference: tiktoken built from
the same ranks (its ``_encode_single_piece`` and ``encode_ordinary``), a special-token
scan written out position by position, an LRU kept as a plain list, the set of every
proper prefix of every code point's UTF-8 encoding, and Python's own decoder. Texts
mix scripts, emoji, combining marks, special-token text and lone surrogates. Checks
print nothing.

Imports: chapter 2's reference and checks (the tokenizer, its random texts) and nothing
later.
"""
from __future__ import annotations

import random
from functools import lru_cache

from tinygpt.checks.ch02 import random_text, trained_merges, training_text
from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.tokenizer.control import CONTROL_TOKENS
from tinygpt.tokenizer.tokenizer import Tokenizer

__all__ = ["written_here", "course_tokenizer", "check_byte_pair_merge", "check_split_specials",
           "check_chunk_cache", "check_encoder", "check_incomplete_tail", "check_stream_decoder"]


@lru_cache(maxsize=1)
def course_tokenizer() -> Tokenizer:
    """A 600-merge tokenizer trained on the course corpus, with the course's control tokens."""
    return Tokenizer.train(training_text(), 256 + 600 + len(CONTROL_TOKENS),
                           special_tokens=list(CONTROL_TOKENS))


def _tokenizer(rng: random.Random) -> Tokenizer:
    """A tokenizer of 300-600 ids with some of the control tokens, one of them maybe a
    prefix of another special, and a gap before the specials' ids."""
    merges = dict(trained_merges(rng.choice([300, 420, 600])))
    names = rng.sample(CONTROL_TOKENS, rng.randrange(2, 6))
    if rng.random() < 0.6:  # a special that extends another: the longest must win
        names.append(names[0] + rng.choice(["x", "<|end|>", "|>"]))
    first = 256 + len(merges) + rng.randrange(0, 3)
    return Tokenizer(merges, special_tokens={s: first + i for i, s in enumerate(names)})


def _ranks(tok: Tokenizer) -> dict[bytes, int]:
    return {tok.vocab[i]: i for i in range(256 + len(tok.merges))}


_TRAPS = ["\ud800", "\udfff", "\ud83d\ude00", "x\udc80y", "\U0001f469\u200d\U0001f4bb",
          "e\u0301\u0301", "\u6cb3\u8fb9", "  \n\t", "12345678"]


def _text(rng: random.Random, specials: list[str], n_chars: int = 60) -> str:
    """Random text with special-token text, halves of it, and lone surrogates mixed in."""
    parts = []
    for _ in range(rng.randrange(1, 6)):
        parts.append(random_text(rng, rng.randrange(0, n_chars)))
        roll = rng.random()
        if roll < 0.4 and specials:
            parts.append(rng.choice(specials))
        elif roll < 0.55 and specials:
            s = rng.choice(specials)
            k = rng.randrange(1, len(s))
            parts.append(s[:k] + random_text(rng, 3) + s[k:])
        elif roll < 0.75:
            parts.append(rng.choice(_TRAPS))
    return "".join(parts)


def _oracle_split(text: str, specials) -> list[tuple[str, bool]]:
    """Left to right; at each position the longest special that starts there, if any."""
    names = sorted(set(specials), key=len, reverse=True)
    pieces, plain, i = [], [], 0
    while i < len(text):
        hit = next((s for s in names if text.startswith(s, i)), None)
        if hit is None:
            plain.append(text[i])
            i += 1
            continue
        if plain:
            pieces.append(("".join(plain), False))
            plain = []
        pieces.append((hit, True))
        i += len(hit)
    if plain:
        pieces.append(("".join(plain), False))
    return pieces


def check_byte_pair_merge(byte_pair_merge, seed: int) -> None:
    """tiktoken's ids for single pre-tokens (its ``_encode_single_piece`` over the same
    ranks), for real pre-tokens and random bytes; a piece with an unranked byte is a
    ValueError."""
    rng = random.Random(seed)
    tok = _tokenizer(rng)
    ranks, enc = _ranks(tok), tok.to_tiktoken()
    pieces = [p.encode("utf-8", "replace") for p in tok._split.findall(random_text(rng, 300))]
    pieces += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))) for _ in range(10)]
    pieces += [rng.choice(list(ranks)) * rng.randrange(2, 5) for _ in range(5)]  # repeats: ties
    for piece in pieces:
        want = enc._encode_single_piece(piece)
        got = byte_pair_merge(piece, dict(ranks))
        if list(got) != want:
            raise mismatch("byte_pair_merge(piece, ranks) differs from tiktoken's", piece, want, got)
    if list(byte_pair_merge(b"", ranks)) != []:
        raise mismatch("an empty piece has no ids", b"", [], byte_pair_merge(b"", ranks))
    holey = {b: r for b, r in ranks.items() if b != b"q"}
    raises_value_error("byte_pair_merge of a byte with no rank", lambda: byte_pair_merge(b"aq", holey))


def check_split_specials(split_specials, seed: int) -> None:
    """Pieces equal a position-by-position scan (longest special first); they join back to
    the text; only the given specials are matched; an empty special is a ValueError."""
    rng = random.Random(seed)
    for _ in range(25):
        tok = _tokenizer(rng)
        names = list(tok.special_tokens)
        allowed = rng.sample(names, rng.randrange(0, len(names) + 1))
        rng.shuffle(allowed)
        allowed.sort(key=len)  # shortest first: the code must not rely on the order given
        text = _text(rng, names) if rng.random() < 0.7 else "".join(rng.choices(names, k=4))
        want = _oracle_split(text, allowed)
        got = split_specials(text, iter(allowed))
        got = [tuple(p) for p in got] if isinstance(got, list) else got
        if got != want:
            raise mismatch(f"split_specials(text, {allowed})", text, want, got)
    if split_specials("", ["<|end|>"]) != []:
        raise mismatch("empty text has no pieces", "", [], split_specials("", ["<|end|>"]))
    raises_value_error("split_specials with an empty special", lambda: split_specials("ab", ["", "a"]))


def check_chunk_cache(ChunkCache, seed: int) -> None:
    """Random gets and puts agree with an LRU kept as a list: values, hits, misses, len;
    a capacity below 1 is a ValueError."""
    rng = random.Random(seed)
    for _ in range(6):
        capacity = rng.randrange(1, 6)
        cache, order, values, hits, misses = ChunkCache(capacity), [], {}, 0, 0
        keys = [random_text(rng, 3) for _ in range(capacity + rng.randrange(1, 4))]
        log = []
        for step in range(80):
            key = rng.choice(keys)
            if rng.random() < 0.5:
                got = cache.get(key)
                want = values.get(key)
                log.append(("get", key))
                if want is None:
                    misses += 1
                else:
                    hits += 1
                    order.remove(key)
                    order.append(key)
                if got != want:
                    raise mismatch(f"get after these operations (capacity {capacity})", log[-12:],
                                   want, got)
            else:
                ids = [rng.randrange(1000) for _ in range(rng.randrange(1, 4))]
                cache.put(key, ids)
                log.append(("put", key, ids))
                if key in order:
                    order.remove(key)
                order.append(key)
                values[key] = ids
                if len(order) > capacity:
                    del values[order.pop(0)]
            state = (cache.hits, cache.misses, len(cache))
            if state != (hits, misses, len(order)):
                raise mismatch(f"(hits, misses, len) after these operations (capacity {capacity})",
                               log[-12:], (hits, misses, len(order)), state)
    raises_value_error("ChunkCache(0)", lambda: ChunkCache(0))


def _oracle_encode(enc, text: str, allowed) -> list[int]:
    ids = []
    for piece, special in _oracle_split(text, allowed):
        ids.extend([enc._special_tokens[piece]] if special else enc.encode_ordinary(piece))
    return ids


def check_encoder(Encoder, seed: int) -> None:
    """Ids equal tiktoken's on the same ranks (lone surrogates as U+FFFD), with and without
    a cache and at any capacity; only allowed specials become special ids, each special
    whole, split or concatenated; the cache counts one miss per distinct pre-token and a
    hit for every repeat; encode_batch equals encoding each; bad input is a ValueError."""
    rng = random.Random(seed)
    tok = _tokenizer(rng)
    enc = tok.to_tiktoken()
    names = list(tok.special_tokens)
    special_ids = set(tok.special_tokens.values())
    cached, uncached = Encoder(tok, rng.choice([1, 7, 65536])), Encoder(tok, 0)
    if uncached.cache is not None:
        raise mismatch("Encoder(tokenizer, 0) has no cache", 0, None, uncached.cache)
    for _ in range(12):
        text = _text(rng, names)
        want = enc.encode_ordinary(text)
        for encoder, what in ((cached, "with a cache"), (uncached, "without a cache")):
            got = encoder.encode_ordinary(text)
            if got != want:
                raise mismatch(f"encode_ordinary {what} differs from tiktoken", text, want, got)
            got = encoder.encode(text)
            if got != want:
                raise mismatch(f"encode(text) {what}: user text must stay ordinary text", text,
                               want, got)
        allowed = set(rng.sample(names, rng.randrange(1, len(names) + 1)))
        got = cached.encode(text, allowed_special=allowed)
        if got != _oracle_encode(enc, text, allowed):
            raise mismatch(f"encode(text, allowed_special={sorted(allowed)})", text,
                           _oracle_encode(enc, text, allowed), got)
        if cached.encode(text, allowed_special="all") != _oracle_encode(enc, text, names):
            raise mismatch("encode(text, allowed_special='all')", text,
                           _oracle_encode(enc, text, names), cached.encode(text, "all"))
    for s in names:  # every special, whole, split by text, and all of them concatenated
        for text in (s, s[:len(s) // 2] + "a" + s[len(s) // 2:], "".join(names)):
            got = cached.encode(text)
            if special_ids & set(got):
                raise mismatch("user text produced a control token", text, enc.encode_ordinary(text), got)
        if cached.encode(s, allowed_special={s}) != [tok.special_tokens[s]]:
            raise mismatch("an allowed special is its id", s, [tok.special_tokens[s]],
                           cached.encode(s, allowed_special={s}))
    fresh = Encoder(tok, 1 << 16)
    text = random_text(rng, 200)
    pieces = tok._split.findall(text)
    fresh.encode_ordinary(text)
    fresh.encode_ordinary(text)
    want = (len(pieces) * 2 - len(set(pieces)), len(set(pieces)))
    if (fresh.cache.hits, fresh.cache.misses) != want:
        raise mismatch("(hits, misses) after encoding a text twice into an empty cache", text,
                       want, (fresh.cache.hits, fresh.cache.misses))
    texts = [_text(rng, names, 30) for _ in range(rng.randrange(1, 6))]
    texts.append(texts[0])
    allowed = set(names[:1])
    if cached.encode_batch(texts, allowed) != [uncached.encode(t, allowed) for t in texts]:
        raise mismatch("encode_batch(texts) must equal encoding each", texts,
                       [uncached.encode(t, allowed) for t in texts], cached.encode_batch(texts, allowed))
    raises_value_error("encode with an allowed special the tokenizer lacks",
                       lambda: cached.encode("hi", allowed_special={"<|nope|>"}))
    raises_value_error("encode_batch with a non-str item", lambda: cached.encode_batch(["a", 3]))
    raises_value_error("Encoder with a negative cache size", lambda: Encoder(tok, -1))


@lru_cache(maxsize=1)
def _proper_prefixes() -> frozenset[bytes]:
    """Every proper prefix of the UTF-8 encoding of every code point (surrogates have none)."""
    out = set()
    for cp in range(0x80, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        data = chr(cp).encode("utf-8")
        out.update(data[:k] for k in range(1, len(data)))
    return frozenset(out)


def _oracle_tail(data: bytes) -> int:
    prefixes = _proper_prefixes()
    return next((k for k in (3, 2, 1) if k <= len(data) and data[-k:] in prefixes), 0)


def _bytes(rng: random.Random) -> bytes:
    """Whole characters of 1-4 bytes, cut characters and stray bytes, in random order."""
    parts = []
    for _ in range(rng.randrange(0, 6)):
        roll = rng.random()
        cp = rng.choice([rng.randrange(0x80), rng.randrange(0x80, 0x800), rng.randrange(0x800, 0xD800),
                         rng.randrange(0xE000, 0x10000), rng.randrange(0x10000, 0x110000)])
        data = chr(cp).encode("utf-8")
        if roll < 0.5:
            parts.append(data)
        elif roll < 0.8:
            parts.append(data[:rng.randrange(1, len(data))] if len(data) > 1 else data)
        else:
            parts.append(bytes([rng.choice([0x80, 0xBF, 0xC0, 0xC1, 0xE0, 0xED, 0xF0, 0xF4, 0xF5,
                                            0xFF, rng.randrange(256)])]))
    return b"".join(parts)


def check_incomplete_tail(incomplete_tail, seed: int) -> None:
    """The length of the trailing proper prefix of a valid character (0-3), on random mixes
    of whole, cut and invalid bytes, and on every lead byte with every second byte."""
    rng = random.Random(seed)
    cases = [_bytes(rng) for _ in range(300)]
    cases += [bytes([lead, rng.randrange(256)]) for lead in range(0xC0, 0x100)]
    cases += [bytes([lead]) for lead in range(256)]
    cases += [rng.choice([b"", b"a"]) + bytes([lead, second])  # the four limited second bytes
              for lead in (0xE0, 0xED, 0xF0, 0xF4) for second in range(0x80, 0xC0)]
    for data in cases:
        want, got = _oracle_tail(data), incomplete_tail(data)
        if got != want:
            raise mismatch("incomplete_tail(data)", data, want, got)


def _id_streams(rng: random.Random, tok: Tokenizer) -> list[list[int]]:
    """Ids of random text (characters split across byte tokens), random byte ids, and
    random ids over the whole vocabulary, special tokens included."""
    vocab = sorted(tok.vocab)
    return [tok.encode_ordinary(random_text(rng, 60)),
            list(_bytes(rng)) + list(_bytes(rng)),
            [rng.choice(vocab) for _ in range(rng.randrange(0, 30))],
            list(random_text(rng, 20).encode("utf-8"))]


def check_stream_decoder(StreamDecoder, seed: int) -> None:
    """Fed one id at a time, it has emitted exactly the text of the bytes so far less their
    unfinished tail; push and flush joined equal decode(ids); valid text never shows
    U+FFFD; an unknown id is a ValueError that loses nothing."""
    rng = random.Random(seed)
    tok = _tokenizer(rng)
    for _ in range(6):
        for ids in _id_streams(rng, tok):
            stream, emitted, data = StreamDecoder(tok), [], b""
            for n, i in enumerate(ids):
                emitted.append(stream.push(i))
                data += tok.vocab[i]
                want = data[:len(data) - _oracle_tail(data)].decode("utf-8", "replace")
                if "".join(emitted) != want:
                    raise mismatch(f"text emitted after push number {n + 1}", ids[:n + 1], want,
                                   "".join(emitted))
            emitted.append(stream.flush())
            if "".join(emitted) != tok.decode(ids):
                raise mismatch("push and flush joined must equal decode(ids)", ids,
                               tok.decode(ids), "".join(emitted))
    stream = StreamDecoder(tok)
    first = stream.push(0xF0) + stream.push(0x9F)
    raises_value_error("push of an id that is not in the vocabulary", lambda: stream.push(10 ** 6))
    raises_value_error("push of a negative id", lambda: stream.push(-1))
    rest = stream.push(0x98) + stream.push(0x80) + stream.flush()
    if first + rest != "\U0001f600":
        raise mismatch("a bad id must not lose the pending bytes", [0xF0, 0x9F, "bad", 0x98, 0x80],
                       "\U0001f600", first + rest)
