"""Every chapter 7 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random

from tinygpt.checks import ch07 as checks
from tinygpt.service import gateway as g
from conftest import mutant_tests


class _ShaStore(g.KeyStore):  # a plain SHA-256 of the key: no server secret in it
    def _digest(self, key):
        return hashlib.sha256(key.encode()).digest()


class _SkipUnknownId(g.KeyStore):  # an unknown id is refused at once: no comparison made
    def verify(self, key, scope=None):
        if isinstance(key, str) and key[3:19] not in self.records:
            raise g.GatewayError(401, "incorrect API key", code="invalid_api_key")
        return super().verify(key, scope)


class _EqualsCompare(g.KeyStore):  # == on the hex digests, which stops at the first difference
    def __init__(self, secret, compare=None):
        super().__init__(secret)

    def verify(self, key, scope=None):
        record = self.records.get(key[3:19]) if isinstance(key, str) else None
        if record is None or record.digest.hex() != self._digest(key).hex() or record.revoked:
            raise g.GatewayError(401, "incorrect API key", code="invalid_api_key")
        return record


class _SeededKeys(g.KeyStore):  # keys from `random`: predictable
    def create(self, owner, scopes=("chat",)):
        key = g.KEY_PREFIX + "%048x" % random.getrandbits(192)
        self.records[key[3:19]] = g.KeyRecord(key[3:19], owner, frozenset(scopes), self._digest(key))
        return key


class _Uncapped(g.TokenBucket):  # refills past its capacity
    def _refill(self):
        now = self.clock()
        if now > self.updated:
            self.tokens += (now - self.updated) * self.per_second
            self.updated = now


class _SpendsWhenRefused(g.TokenBucket):  # a refused take still empties the bucket
    def take(self, n=1):
        wait = super().take(n)
        if wait:
            self.tokens = 0.0
        return wait


class _StartsEmpty(g.TokenBucket):  # no burst: a new bucket is empty
    def __init__(self, capacity, per_second, clock):
        super().__init__(capacity, per_second, clock)
        self.tokens = 0.0


class _Unlocked(g.TokenBucket):  # no lock: under the GIL it seldom overdraws, but it can
    def __init__(self, capacity, per_second, clock):
        super().__init__(capacity, per_second, clock)
        self._lock = contextlib.nullcontext()


class _SlidingWindow(g.Quota):  # the window starts at the first use, not at k * period
    def _now(self):
        now = self.clock()
        if self.window is None or now >= (self.window + 1) * self.period_s:
            self.window, self.used = now / self.period_s - 1, 0
        return now


class _CountsRefused(g.Quota):  # a refused use is counted anyway
    def use(self, n):
        wait = super().use(n)
        if wait and n <= self.limit:
            self.used = min(self.limit, self.used + n)
        return wait


def _replacing_utf8(body, max_bytes=g.MAX_BODY_BYTES):  # bad bytes become U+FFFD
    if len(body) > max_bytes:
        return g.validate_request(body, max_bytes)
    return g.validate_request(bytes(body).decode("utf-8", "replace").encode(), 10 * max_bytes)


def _ignoring_unknown(body, max_bytes=g.MAX_BODY_BYTES):  # unknown fields silently dropped
    try:
        request = json.loads(body)
    except ValueError:
        return g.validate_request(body, max_bytes)
    if isinstance(request, dict):
        kept = {k: v for k, v in request.items() if k in g.FIELDS}
        if kept != request:
            return g.validate_request(json.dumps(kept).encode(), max_bytes)
    return g.validate_request(body, max_bytes)


def _vague_messages(body, max_bytes=g.MAX_BODY_BYTES):  # names "messages", not the field at fault
    try:
        return g.validate_request(body, max_bytes)
    except g.GatewayError as err:
        if err.param and err.param.startswith("messages["):
            err.param = "messages"
        raise


def _lenient_numbers(body, max_bytes=g.MAX_BODY_BYTES):  # any JSON number passes as an integer
    try:
        return g.validate_request(body, max_bytes)
    except g.GatewayError as err:
        request = json.loads(body) if err.param in ("max_tokens", "n", "seed") else None
        value = request.get(err.param) if isinstance(request, dict) else None
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return request
        raise


class _LimitsFirst(g.Gateway):  # charges the limits before it reads the body
    def admit(self, headers, body):
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        try:
            record = self.keys.verify(auth[7:] if auth.lower().startswith("bearer ") else "", self.scope)
            headers = self._charge(record.key_id, g.DEFAULT_MAX_TOKENS)  # a flat charge, body unread
            request = g.validate_request(body, self.max_bytes)
        except g.GatewayError as err:
            return g.Admission(err.status, err.headers, err.body())
        return g.Admission(200, headers, request=request)


class _RetryFloor(g.Gateway):  # Retry-After rounded down: the client comes back too early
    def admit(self, headers, body):
        out = super().admit(headers, body)
        if "retry-after" in out.headers:
            wait = float(out.headers["retry-after"])
            out.headers["retry-after"] = str(max(0, math.ceil(wait) - 1))
        return out


class _ChargesInTurn(g.Gateway):  # takes a request, then finds the tokens short: one is lost
    def _charge(self, key_id, cost):
        requests, tokens, _ = self._limits_of(key_id)
        if requests.wait(1) == 0 and tokens.wait(cost) > 0:
            requests.take(1)
        return super()._charge(key_id, cost)


MUTANTS = [
    (checks.check_key_store, (_ShaStore,)),
    (checks.check_key_store, (_SkipUnknownId,)),
    (checks.check_key_store, (_EqualsCompare,)),
    (checks.check_key_store, (_SeededKeys,)),
    (checks.check_token_bucket, (_Uncapped,)),
    (checks.check_token_bucket, (_SpendsWhenRefused,)),
    (checks.check_token_bucket, (_StartsEmpty,)),
    (checks.check_token_bucket, (_Unlocked,)),
    (checks.check_quota, (_SlidingWindow,)),
    (checks.check_quota, (_CountsRefused,)),
    (checks.check_validate_request, (_replacing_utf8,)),
    (checks.check_validate_request, (_ignoring_unknown,)),
    (checks.check_validate_request, (_vague_messages,)),
    (checks.check_validate_request, (_lenient_numbers,)),
    (checks.check_gateway, (_LimitsFirst, g.KeyStore)),
    (checks.check_gateway, (_RetryFloor, g.KeyStore)),
    (checks.check_gateway, (_ChargesInTurn, g.KeyStore)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
