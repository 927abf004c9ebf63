"""Every chapter 9 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

from tinygpt.checks import ch09 as checks
from tinygpt.engine import tokenization as t
from conftest import mutant_tests


def _leftmost_pair_first(piece, ranks):  # merges the first mergeable pair, not the best one
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    merged = True
    while merged and len(parts) > 1:
        merged = False
        for i in range(len(parts) - 1):
            if parts[i] + parts[i + 1] in ranks:
                parts[i:i + 2] = [parts[i] + parts[i + 1]]
                merged = True
                break
    return [ranks[p] for p in parts]


def _longest_prefix_first(piece, ranks):  # greedy longest match, as WordPiece does
    ids, i = [], 0
    while i < len(piece):
        j = next(j for j in range(len(piece), i, -1) if piece[i:j] in ranks)
        ids.append(ranks[piece[i:j]])
        i = j
    return ids


def _specials_in_given_order(text, specials):  # the first alternative wins, not the longest
    specials = list(specials)
    if "" in specials:
        raise ValueError("empty")
    pieces, i, plain = [], 0, ""
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit is None:
            plain, i = plain + text[i], i + 1
            continue
        if plain:
            pieces.append((plain, False))
        pieces.append((hit, True))
        plain, i = "", i + len(hit)
    return pieces + ([(plain, False)] if plain else [])


def _specials_keep_empty(text, specials):  # empty text between two specials kept
    out = []
    for piece, special in t.split_specials(text, specials):
        if special and out and out[-1][1]:
            out.append(("", False))
        out.append((piece, special))
    return out


class _FifoCache(t.ChunkCache):  # a hit does not refresh the key
    def get(self, key):
        ids = self._entries.get(key)
        if ids is None:
            self.misses += 1
            return None
        self.hits += 1
        return ids


class _OneTooManyCache(t.ChunkCache):
    def __init__(self, capacity):
        super().__init__(capacity)
        self.capacity = capacity + 1


class _SpecialsByDefault(t.Encoder):  # the prompt-injection bug: user text becomes control tokens
    def encode(self, text, allowed_special="all"):
        return super().encode(text, allowed_special)


class _SurrogatesPassed(t.Encoder):  # lone surrogates encoded as their (invalid) bytes
    def encode_ordinary(self, text):
        ids = []
        for piece in self.split.findall(text):
            ids.extend(t.byte_pair_merge(piece.encode("utf-8", "surrogatepass"), self.ranks))
        return ids


class _CacheNotCounted(t.Encoder):  # a cache that is looked at only for misses
    def encode_ordinary(self, text):
        ids = super().encode_ordinary(text)
        if self.cache is not None:
            self.cache.hits = 0
        return ids


def _tail_ignoring_second_byte(data):  # 0xE0 0x80 would wait forever
    for back in range(1, min(3, len(data)) + 1):
        lead = data[-back]
        if lead & 0xC0 == 0x80:
            continue
        return back if t._sequence_length(lead) > back else 0
    return 0


def _tail_any_lead(data):  # holds a whole character back too
    for back in range(1, min(3, len(data)) + 1):
        if data[-back] >= 0xC2:
            return back
    return 0


class _DecoderIgnoringBadBytes(t.StreamDecoder):  # drops invalid bytes instead of U+FFFD
    def push(self, token_id):
        return super().push(token_id).replace("\ufffd", "")


class _DecoderNeverHolding(t.StreamDecoder):  # decodes each token alone: U+FFFD mid-stream
    def push(self, token_id):
        if token_id not in self.vocab:
            raise ValueError("unknown id")
        return self.vocab[token_id].decode("utf-8", errors="replace")


class _DecoderHoldingEverything(t.StreamDecoder):  # emits nothing until the end
    def push(self, token_id):
        if token_id not in self.vocab:
            raise ValueError("unknown id")
        self.pending += self.vocab[token_id]
        return ""


MUTANTS = [
    (checks.check_byte_pair_merge, (_leftmost_pair_first,)),
    (checks.check_byte_pair_merge, (_longest_prefix_first,)),
    (checks.check_split_specials, (_specials_in_given_order,)),
    (checks.check_split_specials, (_specials_keep_empty,)),
    (checks.check_chunk_cache, (_FifoCache,)),
    (checks.check_chunk_cache, (_OneTooManyCache,)),
    (checks.check_encoder, (_SpecialsByDefault,)),
    (checks.check_encoder, (_SurrogatesPassed,)),
    (checks.check_encoder, (_CacheNotCounted,)),
    (checks.check_incomplete_tail, (_tail_ignoring_second_byte,)),
    (checks.check_incomplete_tail, (_tail_any_lead,)),
    (checks.check_stream_decoder, (_DecoderIgnoringBadBytes,)),
    (checks.check_stream_decoder, (_DecoderNeverHolding,)),
    (checks.check_stream_decoder, (_DecoderHoldingEverything,)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
