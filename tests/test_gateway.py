"""Chapter 7's exported reference passes its own checks, and the gateway keeps the promises
the server relies on: refusals are OpenAI's error object, a request too large for a
limit is refused for good (no Retry-After), keys of every odd shape are refused cleanly,
and the table of malformed requests is as large as the brief asks."""
from __future__ import annotations

import json
import math

import pytest

from tinygpt.checks import ch07 as checks
from tinygpt.checks.ch07 import FakeClock
from tinygpt.service.gateway import (Gateway, GatewayError, KeyStore, Quota, TokenBucket,
                                     token_cost, validate_request)
from conftest import reference_tests

REFERENCE = [
    (checks.check_key_store, (KeyStore,)),
    (checks.check_token_bucket, (TokenBucket,)),
    (checks.check_quota, (Quota,)),
    (checks.check_validate_request, (validate_request,)),
    (checks.check_gateway, (Gateway, KeyStore)),
]

test_every_check_is_run_on_the_reference, test_reference_passes_its_checks = \
    reference_tests(REFERENCE, checks, range(8))

SECRET = b"0123456789abcdef0123456789abcdef"
OK = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 40}],
                 "max_tokens": 10, "n": 2}).encode()


def test_the_malformed_table_covers_the_brief():
    assert len(checks.MALFORMED) >= 40
    statuses = {status for _, _, status, _ in checks.MALFORMED}
    assert statuses == {400, 413}
    assert len({what for what, *_ in checks.MALFORMED}) == len(checks.MALFORMED)


def test_errors_have_openais_shape():
    err = GatewayError(400, "temperature must be in [0, 2]", "temperature")
    assert err.body() == {"error": {"message": "temperature must be in [0, 2]",
                                    "type": "invalid_request_error", "param": "temperature",
                                    "code": None}}


def test_token_cost_is_the_prompt_estimate_plus_what_may_be_generated():
    assert token_cost(json.loads(OK)) == 10 + 10 * 2
    parts = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "abcde"}]}]}
    assert token_cost(parts) == 2 + 256


@pytest.mark.parametrize("key", [None, "", 42, "tg-", "tg-" + "0" * 48, "\udcff" * 51, "Bearer x"])
def test_odd_keys_are_a_401(key):
    store = KeyStore(SECRET)
    store.create("alice")
    with pytest.raises(GatewayError) as err:
        store.verify(key)
    assert err.value.status == 401


def test_a_request_larger_than_the_token_limit_is_refused_for_good():
    store = KeyStore(SECRET)
    key = store.create("alice")
    gateway = Gateway(store, 60, tokens_per_minute=20, tokens_per_day=10_000, clock=FakeClock())
    out = gateway.admit({"AUTHORIZATION": f"bearer {key}"}, OK)  # 30 tokens > 20 per minute
    assert out.status == 429 and out.body["error"]["type"] == "tokens"
    assert "retry-after" not in out.headers and out.headers["x-ratelimit-remaining-tokens"] == "20"


def test_the_quota_refuses_until_the_next_day():
    clock = FakeClock(86400 * 3 + 80000)
    store = KeyStore(SECRET)
    key = store.create("alice")
    gateway = Gateway(store, 60, 1000, tokens_per_day=50, clock=clock)
    auth = {"Authorization": f"Bearer {key}"}
    assert gateway.admit(auth, OK).status == 200
    refused = gateway.admit(auth, OK)
    assert refused.status == 429 and refused.body["error"]["code"] == "insufficient_quota"
    assert refused.headers["retry-after"] == str(86400 - 80000)
    clock.advance(86400 - 80000)
    assert gateway.admit(auth, OK).status == 200


def test_a_stepping_back_clock_refills_nothing():
    clock = FakeClock(100.0)
    bucket = TokenBucket(2, 1.0, clock)
    assert bucket.take(2) == 0.0
    clock.advance(-50.0)
    assert bucket.available() == 0.0
    clock.advance(51.0)
    assert bucket.available() == 1.0


def test_a_body_must_be_bytes():
    with pytest.raises(TypeError, match="bytes"):
        validate_request('{"model": "m"}')


def test_bad_limits_are_value_errors():
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(math.inf, 1.0)
    with pytest.raises(ValueError, match="limit"):
        Quota(1.5, 60)
    with pytest.raises(ValueError, match="owner"):
        KeyStore(SECRET).create("")
