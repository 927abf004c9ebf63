"""Property checks for chapter 2 (tokenizer training), written once and run against anyone's code.

Notebook test cells call these on the learner's functions (visible cells with seed 0,
hidden cells with fresh seeds); pytest calls the same checks on the exported reference.
Each check compares with an independent oracle written here (a naive recount, a plain
loop) or with tiktoken, on random inputs drawn from ``seed``, and checks invariants:
round trips, conservation of counts, inputs left unchanged. A failure says what was
given, what was expected and what came back. Checks print nothing.

Imports: chapter 2's reference (``tinygpt.tokenizer``) and nothing later.
"""
from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
from functools import lru_cache
from pathlib import Path

import regex
import tiktoken

from tinygpt.checks.common import mismatch, raises_value_error, written_here
from tinygpt.corpus import course_corpus
from tinygpt.tokenizer import bpe as ref_bpe
from tinygpt.tokenizer.primitives import GPT4_PATTERN
from tinygpt.tokenizer.tokenizer import Tokenizer as RefTokenizer

__all__ = ["written_here", "random_text", "training_text", "naive_train_bpe",
           "check_pretokenize", "check_get_stats", "check_merge", "check_merge_with_delta",
           "check_train_bpe", "check_encode_chunk", "check_decode_bytes", "check_roundtrip",
           "check_special_tokens", "check_save_load", "check_tiktoken_export"]

# Pools of text the random generator draws from: every script and trap we know of.
_POOLS = [
    "the bank by river had no money we've I'll they're DON'T",      # English, contractions
    "0123456789 3.14159 1,000,000 42nd",                               # numbers
    "!?.,;:-()[]{}<>/\\'\"@#$%^&*_+=~`|",                              # punctuation
    " \t\n\r\n  \n\n   \u00a0\u3000",                                  # whitespace kinds
    "caf\u00e9 cafe\u0301 na\u00efve \u00fcber \u00c5ngstr\u00f6m",    # precomposed, combining
    "\u6cb3\u8fb9\u7684\u94f6\u884c\u6ca1\u6709\u94b1 \u65e5\u672c\u8a9e\u306e\u6587",  # CJK
    "\u0431\u0430\u043d\u043a \u0443 \u0440\u0435\u043a\u0438 \u0645\u0635\u0631\u0641 \u05d1\u05e0\u05e7",  # Cyrillic, Arabic, Hebrew
    "\U0001f3e6\U0001f30a\U0001f4b8 \U0001f44d\U0001f3fd \U0001f469\u200d\U0001f4bb \U0001f1eb\U0001f1f7",  # emoji, ZWJ, flags
    "\u0928\u0926\u0940 \u0915\u0947 \u0915\u093f\u0928\u093e\u0930\u0947 \u0e18\u0e19\u0e32\u0e04\u0e32\u0e23",  # Devanagari, Thai
]


def random_text(rng: random.Random, n_chars: int = 80) -> str:
    """A random string mixing scripts, digits, punctuation, whitespace and emoji."""
    out = []
    while sum(map(len, out)) < n_chars:
        pool = rng.choice(_POOLS)
        start = rng.randrange(len(pool))
        out.append(pool[start:start + rng.randrange(1, 12)])
    return "".join(out)


@lru_cache(maxsize=1)
def training_text() -> str:
    """A slice of the course corpus that trains a small tokenizer in well under a second."""
    return course_corpus(150_000)


@contextlib.contextmanager
def _quiet(name: str):
    """Fail if the code under test prints: the grader scores any stderr output as 0."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield
    if out.getvalue() or err.getvalue():
        raise AssertionError(f"{name} printed {(out.getvalue() + err.getvalue())[:200]!r}; "
                             "graded code must be quiet")


# ---------------------------------------------------------------- notebook 1

def check_pretokenize(pretokenize, seed: int) -> None:
    """Same pieces as the GPT-4 pattern gives, on random text; pieces join to the text."""
    rng = random.Random(seed)
    for _ in range(20):
        text = random_text(rng, rng.randrange(0, 120))
        got = pretokenize(text)
        expected = regex.findall(GPT4_PATTERN, text)
        if got != expected:
            raise mismatch("pretokenize(text) differs from the GPT-4 pattern's pieces", text,
                        expected, got)
        if "".join(got) != text:
            raise mismatch("the pieces do not join back to the text", text, text, "".join(got))
    words_only = r"\S+|\s+"
    text = random_text(rng)
    if pretokenize(text, words_only) != regex.findall(words_only, text):
        raise mismatch("pretokenize(text, pattern) must use the pattern it is given",
                    (text, words_only), regex.findall(words_only, text),
                    pretokenize(text, words_only))


def _random_ids(rng: random.Random, n: int, alphabet: int) -> list[int]:
    return [rng.randrange(alphabet) for _ in range(n)]


def check_get_stats(get_stats, seed: int) -> None:
    """Counts equal a plain count of zip(ids, ids[1:]); they sum to len(ids) - 1."""
    rng = random.Random(seed)
    for _ in range(30):
        ids = _random_ids(rng, rng.randrange(0, 60), rng.choice([2, 3, 8, 300]))
        before = list(ids)
        got = get_stats(ids)
        expected: dict = {}
        for i in range(len(ids) - 1):
            expected[ids[i], ids[i + 1]] = expected.get((ids[i], ids[i + 1]), 0) + 1
        if dict(got) != expected:
            raise mismatch("get_stats(ids) miscounts", ids, expected, dict(got))
        if ids != before:
            raise mismatch("get_stats changed its input", before, before, ids)


def _plain_merge(ids, pair, idx):
    """The merge oracle: walk (this, next) pairs and skip the partner of each match."""
    out, skip = [], False
    for here, after in zip(ids, [*ids[1:], None]):
        if skip:
            skip = False
        elif (here, after) == tuple(pair):
            out.append(idx)
            skip = True
        else:
            out.append(here)
    return out


def check_merge(merge, seed: int) -> None:
    """Left-to-right, non-overlapping replacement; the input is left unchanged."""
    rng = random.Random(seed)
    for _ in range(30):
        ids = _random_ids(rng, rng.randrange(0, 40), rng.choice([2, 3, 5]))
        if ids and rng.random() < 0.8:
            i = rng.randrange(len(ids))
            pair = (ids[i], ids[i + 1]) if i + 1 < len(ids) else (ids[i], ids[i])
        else:
            pair = (rng.randrange(5), rng.randrange(5))
        idx = rng.randrange(256, 1000)
        before = list(ids)
        got = merge(ids, pair, idx)
        expected = _plain_merge(ids, pair, idx)
        if list(got) != expected:
            raise mismatch(f"merge(ids, {pair}, {idx}) is wrong", ids, expected, got)
        if ids != before:
            raise mismatch("merge changed its input list", before, before, ids)


# ---------------------------------------------------------------- notebook 2

def _pair_counts(ids) -> dict:
    out: dict = {}
    for p in zip(ids, ids[1:]):
        out[p] = out.get(p, 0) + 1
    return out


def check_merge_with_delta(merge_with_delta, seed: int) -> None:
    """The new word is the merged word; delta is (counts after) - (counts before), no zeros."""
    rng = random.Random(seed)
    for _ in range(30):
        word = _random_ids(rng, rng.randrange(0, 30), rng.choice([2, 3, 4]))
        pair = (rng.randrange(3), rng.randrange(3))
        idx = rng.randrange(256, 900)
        before = list(word)
        new, delta = merge_with_delta(word, pair, idx)
        expected_new = _plain_merge(word, pair, idx)
        after, prior = _pair_counts(expected_new), _pair_counts(word)
        expected_delta = {p: after.get(p, 0) - prior.get(p, 0) for p in set(after) | set(prior)}
        expected_delta = {p: d for p, d in expected_delta.items() if d}
        if list(new) != expected_new:
            raise mismatch(f"merge_with_delta(word, {pair}, {idx}): wrong new word", word,
                        expected_new, new)
        if dict(delta) != expected_delta:
            raise mismatch(f"merge_with_delta(word, {pair}, {idx}): wrong delta", word,
                        expected_delta, dict(delta))
        if word != before:
            raise mismatch("merge_with_delta changed its input word", before, before, word)


def naive_train_bpe(text: str, vocab_size: int, pattern: str = GPT4_PATTERN) -> dict:
    """The slow oracle: recount every pair of every word after every merge."""
    words = [list(piece.encode("utf-8")) for piece in regex.findall(pattern, text)]
    merges = {}
    for idx in range(256, vocab_size):
        counts: dict = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges[best] = idx
        words = [_plain_merge(w, best, idx) for w in words]
    return merges


def _random_corpus(rng: random.Random) -> str:
    """Short words over a small alphabet (many ties), now and then non-ASCII."""
    alphabet = rng.choice(["ab", "abc", "abcd", "ab\u00e9", "a\U0001f30ab"])
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 7)))
             for _ in range(rng.randrange(5, 60))]
    seps = [" ", " ", " ", "\n", ", "]
    return "".join(w + rng.choice(seps) for w in words)


def check_train_bpe(train_bpe, seed: int) -> None:
    """Merges identical to the naive full-recount oracle; deterministic; quiet."""
    rng = random.Random(seed)
    for _ in range(8):
        text = _random_corpus(rng)
        vocab_size = 256 + rng.randrange(1, 40)
        with _quiet("train_bpe"):
            got = train_bpe(text, vocab_size)
        expected = naive_train_bpe(text, vocab_size)
        if list(dict(got).items()) != list(expected.items()):
            raise mismatch(f"train_bpe(text, {vocab_size}): merges differ from the oracle "
                        "(most frequent pair first, ties to the smallest pair)",
                        text, expected, dict(got))
        if train_bpe(text, vocab_size) != got:
            raise AssertionError("train_bpe is not deterministic: two calls gave different merges")
    text = random_text(rng, 400)
    got, expected = train_bpe(text, 300), naive_train_bpe(text, 300)
    if list(dict(got).items()) != list(expected.items()):
        raise mismatch("train_bpe differs from the oracle on multi-script text", text, expected, got)


def _lowest_rank_oracle(data: bytes, merges: dict) -> list[int]:
    ids = list(data)
    while True:
        ranked = [(merges[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in merges]
        if not ranked:
            return ids
        rank, _ = min(ranked)
        pair = next(p for p, r in merges.items() if r == rank)
        ids = _plain_merge(ids, pair, rank)


def check_encode_chunk(encode_chunk, seed: int) -> None:
    """Equals replaying merges lowest rank first; decodes back to the chunk's bytes."""
    rng = random.Random(seed)
    for _ in range(6):
        text = _random_corpus(rng) + random_text(rng, 60)
        merges = ref_bpe.train_bpe(text, 256 + rng.randrange(5, 60))
        vocab = ref_bpe.vocab_bytes(merges)
        pieces = regex.findall(GPT4_PATTERN, text) + [random_text(rng, 20) for _ in range(5)]
        for piece in pieces:
            data = piece.encode("utf-8")
            got = encode_chunk(data, merges)
            expected = _lowest_rank_oracle(data, merges)
            if list(got) != expected:
                raise mismatch("encode_chunk(data, merges) differs from merge replay by rank",
                            data, expected, got)
            if b"".join(vocab[i] for i in got) != data:
                raise mismatch("encode_chunk's ids do not decode to the input bytes", data, data, got)


def check_decode_bytes(decode_bytes, seed: int) -> None:
    """Concatenated token bytes, for any ids; an unknown id raises KeyError."""
    rng = random.Random(seed)
    merges = ref_bpe.train_bpe(_random_corpus(rng), 256 + rng.randrange(1, 30))
    vocab = ref_bpe.vocab_bytes(merges)
    for _ in range(20):
        ids = [rng.randrange(len(vocab)) for _ in range(rng.randrange(0, 30))]
        got = decode_bytes(ids, vocab)
        expected = b"".join(vocab[i] for i in ids)
        if got != expected:
            raise mismatch("decode_bytes(ids, vocab) is wrong", ids, expected, got)
    try:
        decode_bytes([len(vocab) + 7], vocab)
    except KeyError:
        pass
    else:
        raise AssertionError("decode_bytes must raise KeyError for an id not in vocab")


# ---------------------------------------------------------------- notebook 3

_SPECIAL_NAMES = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>",
                  "<|tool_call|>", "<|think|>", "<|end|>", "<|endofprompt|>"]


@lru_cache(maxsize=8)
def trained_merges(vocab_size: int) -> tuple:
    return tuple(ref_bpe.train_bpe(training_text(), vocab_size).items())


def _setup(seed: int):
    """A reference tokenizer and the matching constructor arguments, drawn from ``seed``."""
    rng = random.Random(seed)
    merges = dict(trained_merges(rng.choice([300, 360, 420, 512])))
    names = rng.sample(_SPECIAL_NAMES, rng.randrange(1, 5))
    if rng.random() < 0.5:  # a special token that is a prefix of another: longest wins
        names.append(names[0][:-2] + "_x|>")
    first = 256 + len(merges) + rng.randrange(0, 3)
    specials = {s: first + i for i, s in enumerate(names)}
    return rng, merges, specials, RefTokenizer(merges, special_tokens=specials)


def _text_with_specials(rng: random.Random, names: list[str]) -> str:
    parts = []
    for _ in range(rng.randrange(1, 6)):
        parts.append(random_text(rng, rng.randrange(0, 40)))
        if rng.random() < 0.7:
            parts.append(rng.choice(names))
    return "".join(parts)


def check_roundtrip(Tokenizer, seed: int) -> None:
    """decode(encode_ordinary(t)) == t on any text; ids equal the reference's; U+FFFD on bad bytes."""
    rng, merges, specials, ref = _setup(seed)
    tok = Tokenizer(merges, special_tokens=specials)
    for _ in range(20):
        text = _text_with_specials(rng, list(specials))
        ids = tok.encode_ordinary(text)
        expected = ref.encode_ordinary(text)
        if list(ids) != expected:
            raise mismatch("encode_ordinary differs from the reference with the same merges",
                        text, expected, ids)
        if set(ids) & set(specials.values()):
            raise mismatch("encode_ordinary produced a special token id", text, expected, ids)
        if tok.decode(ids) != text:
            raise mismatch("decode(encode_ordinary(text)) != text", text, text, tok.decode(ids))
    for _ in range(20):
        ids = [i for i in (rng.randrange(ref.n_vocab + 3) for _ in range(rng.randrange(12)))
               if i in ref.vocab]
        if tok.decode(ids) != ref.decode(ids):
            raise mismatch("decode(ids) must replace invalid UTF-8 with U+FFFD, like tiktoken",
                        ids, ref.decode(ids), tok.decode(ids))


def check_special_tokens(Tokenizer, seed: int) -> None:
    """encode honours allowed_special / disallowed_special exactly as tiktoken does."""
    rng, merges, specials, ref = _setup(seed)
    tok = Tokenizer(merges, special_tokens=specials)
    enc = ref.to_tiktoken()
    names = list(specials)
    for _ in range(15):
        text = _text_with_specials(rng, names)
        allowed = set(rng.sample(names, rng.randrange(0, len(names) + 1)))
        for kwargs in ({"allowed_special": "all"}, {"allowed_special": allowed},
                       {"allowed_special": allowed, "disallowed_special": ()}, {}):
            try:
                expected = enc.encode(text, **kwargs)
            except ValueError:
                expected = ValueError
            try:
                got = tok.encode(text, **kwargs)
            except ValueError:
                got = ValueError
            if expected is ValueError and got is not ValueError:
                raise mismatch(f"encode(text, **{kwargs}) must raise ValueError: the text holds "
                            "a disallowed special token", text, "ValueError", got)
            if got != expected:
                raise mismatch(f"encode(text, **{kwargs}) differs from tiktoken", text,
                            expected, got)
        plain = tok.encode(text, disallowed_special=())
        if set(plain) & set(specials.values()):
            raise mismatch("with disallowed_special=() special tokens must be encoded as text",
                        text, ref.encode_ordinary(text), plain)


def check_save_load(Tokenizer, seed: int) -> None:
    """A saved tokenizer loads back equal, in the documented JSON format; bad files raise ValueError."""
    rng, merges, specials, ref = _setup(seed)
    tok = Tokenizer(merges, special_tokens=specials)
    texts = [_text_with_specials(rng, list(specials)) for _ in range(10)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tok.json"
        tok.save(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != "tinygpt-bpe" or data.get("version") != 1:
            raise mismatch("the saved file must carry format and version", path.name,
                        {"format": "tinygpt-bpe", "version": 1}, data)
        for name, back in (("Tokenizer.load", Tokenizer.load(path)),
                           ("the reference's load", RefTokenizer.load(path))):
            for text in texts:
                want = ref.encode(text, allowed_special="all")
                if back.encode(text, allowed_special="all") != want:
                    raise mismatch(f"a tokenizer saved and read by {name} encodes differently",
                                text, want, back.encode(text, allowed_special="all"))
        ref.save(path)
        if Tokenizer.load(path).encode(texts[0], allowed_special="all") != ref.encode(
                texts[0], allowed_special="all"):
            raise AssertionError("Tokenizer.load cannot read a file the reference saved")
        bad_files = {"not JSON": "{merges: oops", "JSON but no tokenizer": "[1, 2, 3]",
                     "another format": json.dumps({"format": "sentencepiece", "version": 1}),
                     "a newer version": json.dumps(dict(data, version=99)),
                     "a malformed merge": json.dumps(dict(data, merges=[[1]]))}
        for what, content in bad_files.items():
            path.write_text(content, encoding="utf-8")
            raises_value_error(f"Tokenizer.load of {what}", lambda: Tokenizer.load(path))


def check_tiktoken_export(Tokenizer, seed: int) -> None:
    """The exported tiktoken.Encoding gives the same ids on any text, special tokens included."""
    rng, merges, specials, ref = _setup(seed)
    tok = Tokenizer(merges, special_tokens=specials)
    enc = tok.to_tiktoken()
    if not isinstance(enc, tiktoken.Encoding):
        raise mismatch("to_tiktoken must return a tiktoken.Encoding", "", "tiktoken.Encoding",
                    type(enc))
    if enc.max_token_value != max(ref.vocab):
        raise mismatch("the Encoding's vocabulary differs", "", max(ref.vocab), enc.max_token_value)
    for _ in range(20):
        text = _text_with_specials(rng, list(specials))
        want = ref.encode(text, allowed_special="all")
        got = enc.encode(text, allowed_special="all")
        if got != want:
            raise mismatch("tiktoken built from your ranks disagrees with the tokenizer", text,
                        want, got)
        if enc.decode(got) != text:
            raise mismatch("tiktoken's decode does not give the text back", text, text,
                        enc.decode(got))
