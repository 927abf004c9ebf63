"""Property checks for chapter 7 (the API gateway), written once and run against anyone's code.

Notebook test cells call these on the learner's classes and functions (visible cells with
seed 0, hidden cells with fresh seeds); pytest calls the same checks on the exported
reference. The oracles are written here: a token bucket and a quota in exact
``Fraction`` arithmetic, the request rules as a table of malformed bodies (``MALFORMED``,
each with the status and parameter it must be refused with) and as generators of random
valid requests with one fault put in, and the admission order (key, size, shape, limits)
replayed step by step under a hand-moved clock. Clocks move in sixteenths of a second and
rates are multiples of a quarter, so the learner's floats and the oracle's fractions
agree exactly. Errors are recognised by their fields (``status``, ``param``, ``type``,
``code``), not by their class: the notebook's ``GatewayError`` is its own. Checks print
nothing.

Imports: nothing of the course but the shared checks. The service package ranks after
this chapter's checks (it grows until chapter 15), and every oracle is here.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import threading
import time
from fractions import Fraction

from tinygpt.checks.common import mismatch, raises_value_error, written_here

__all__ = ["written_here", "FakeClock", "MALFORMED", "check_key_store", "check_token_bucket",
           "check_quota", "check_validate_request", "check_gateway"]

LIMIT = 16_384           # the body limit the checks give validate_request and Gateway
DEFAULT_MAX_TOKENS = 256  # the chapter's charge for a request without max_tokens
TICK = 1 / 16             # the clock's step: every time the checks set is exact in binary


class FakeClock:
    """A clock moved by hand: calling it gives the time; ``advance`` moves it on."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _refusal(what: str, call):
    """The error ``call()`` raises, which must carry an HTTP ``status``."""
    try:
        got = call()
    except Exception as err:  # noqa: BLE001 - any error is inspected by its fields
        if not isinstance(getattr(err, "status", None), int):
            raise AssertionError(f"{what} must raise a GatewayError (with a status), raised "
                                 f"{type(err).__name__}: {err}") from None
        return err
    raise AssertionError(f"{what} must be refused, it returned {got!r}"[:400])


def _same_wait(got, want) -> bool:
    return isinstance(got, (int, float)) and (got == want if want in (0, math.inf)
                                              else math.isclose(got, want, rel_tol=1e-9))


# ------------------------------------------------------------------------- API keys

def _contents(obj, seen=None):
    """Every str and bytes reachable from ``obj``'s attributes, containers and records."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, bytes, bytearray)):
        yield bytes(obj) if isinstance(obj, bytearray) else obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _contents(k, seen)
            yield from _contents(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            yield from _contents(v, seen)
    elif hasattr(obj, "__dict__") and not callable(obj):
        yield from _contents(vars(obj), seen)


def _kept_plainly(store, key: str, secret: bytes) -> str | None:
    """What is wrong with how ``store`` keeps ``key``, or None."""
    verifier = key[-32:]
    found = list(_contents(store))
    for item in found:
        if isinstance(item, str) and verifier in item or isinstance(item, bytes) and (
                verifier.encode() in item or bytes.fromhex(verifier) in item):
            return f"the store holds the key's secret part: {item!r}"[:300]
    mac = hmac.new(secret, key.encode(), hashlib.sha256)
    if not any(item in (mac.digest(), mac.hexdigest()) for item in found):
        return "the store must keep HMAC-SHA256(secret, key) (its digest), and nothing it could be read from"
    return None


def _flip(ch: str) -> str:
    return "0" if ch != "0" else "1"


def check_key_store(KeyStore, seed: int) -> None:
    """Keys are "tg-" and 48 hex digits from ``secrets`` (not ``random``), all distinct; the
    store holds only their HMAC-SHA256 under the secret; ``verify`` returns each key's
    record (owner, scopes, id), refuses a wrong, revoked or out-of-scope key with a 401
    that does not repeat it, and calls ``compare`` exactly once, on two 32-byte digests,
    however much of the key matches; a short secret and an unknown id are ValueErrors."""
    rng = random.Random(seed)
    secret = rng.randbytes(32)
    calls: list = []

    def counting(a, b):
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    store = KeyStore(secret, compare=counting)
    keys, made = {}, []
    for i in range(rng.randrange(3, 7)):
        owner, scopes = f"team-{rng.randrange(10 ** 6)}-{i}", rng.choice([("chat",), ("chat", "admin"), ("embeddings",)])
        key = store.create(owner, scopes)
        if not (isinstance(key, str) and key.startswith("tg-") and len(key) == 51
                and all(c in "0123456789abcdef" for c in key[3:])):
            raise mismatch("create must return 'tg-' and 48 lowercase hex digits", (owner, scopes),
                           "tg-" + "0" * 48, key)
        keys[key] = (owner, frozenset(scopes))
        made.append(key)
    if len({k[3:19] for k in made}) != len(made):
        raise AssertionError(f"keys and their ids must all differ: {made}")
    for key in keys:
        problem = _kept_plainly(store, key, secret)
        if problem:
            raise AssertionError(problem)
    for key, (owner, scopes) in keys.items():
        for scope in (None, *sorted(scopes)):
            record = store.verify(key, scope)
            got = (getattr(record, "owner", None), set(getattr(record, "scopes", ())),
                   getattr(record, "key_id", None))
            if got != (owner, set(scopes), key[3:19]):
                raise mismatch(f"verify(key, {scope!r}): the record's (owner, scopes, key_id)", key,
                               (owner, set(scopes), key[3:19]), got)
        err = _refusal(f"verify with a scope the key lacks ({sorted(scopes)})",
                       lambda: store.verify(key, "billing"))
        if err.status != 401:
            raise mismatch("a missing scope's status", key, 401, err.status)
    real = rng.choice(list(keys))
    probes = [real[:k] + _flip(real[k]) + real[k + 1:] for k in sorted(rng.sample(range(len(real)), 16))]
    probes += ["tg-" + rng.randbytes(24).hex(), "sk-" + real[3:], real[:-1], real + "0", real.upper(), "x"]
    for probe in [real] + probes:
        calls.clear()
        if probe == real:
            store.verify(probe)
        else:
            err = _refusal(f"verify({probe!r}) (a wrong key)", lambda: store.verify(probe))
            if err.status != 401 or real in str(err) or probe in str(err):
                raise mismatch("a wrong key: status 401, and a message that does not repeat the key",
                               probe, 401, (err.status, str(err)))
        matching = next((i for i, (a, b) in enumerate(zip(probe, real)) if a != b), len(probe))
        if len(calls) != 1:
            raise AssertionError(f"verify called compare {len(calls)} times for a key matching the first "
                                 f"{matching} characters of a real one; it must call it once for every key")
        a, b = calls[0]
        if not (isinstance(a, bytes) and isinstance(b, bytes) and len(a) == len(b) == 32):
            raise mismatch("compare must be given two 32-byte HMAC digests", probe, "(32 bytes, 32 bytes)",
                           (a, b))
        if probe.encode() in (a, b) or real.encode() in (a, b):
            raise AssertionError("compare was given the key itself: compare the HMAC digests")
    victim = rng.choice(list(keys))
    store.revoke(victim[3:19])
    err = _refusal("verify of a revoked key", lambda: store.verify(victim))
    if err.status != 401:
        raise mismatch("a revoked key's status", victim, 401, err.status)
    for key in keys:
        if key != victim:
            store.verify(key)
    raises_value_error("revoke of an unknown id", lambda: store.revoke("f" * 16))
    raises_value_error("KeyStore with an 8-byte secret", lambda: KeyStore(b"12345678"))
    random.seed(seed)
    first = KeyStore(secret).create("a")
    random.seed(seed)
    if KeyStore(secret).create("a") == first:
        raise AssertionError("the same key came twice after random.seed: draw keys from `secrets`")


# ------------------------------------------------------------------------ token buckets

class _OracleBucket:
    """A token bucket in exact arithmetic."""

    def __init__(self, capacity, rate, now):
        self.capacity, self.rate = Fraction(capacity), Fraction(rate)
        self.tokens, self.updated = self.capacity, Fraction(now)

    def _refill(self, now) -> None:
        now = Fraction(now)
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self, now, n) -> float:
        self._refill(now)
        n = Fraction(n)
        if n > self.capacity:
            return math.inf
        missing = n - self.tokens
        return 0.0 if missing <= 0 else math.inf if self.rate == 0 else float(missing / self.rate)

    def take(self, now, n) -> float:
        wait = self.wait(now, n)
        if wait == 0:
            self.tokens -= Fraction(n)
        return wait

    def available(self, now) -> Fraction:
        self._refill(now)
        return self.tokens


def _compare_ops(name: str, unit, oracle, clock: FakeClock, ops: list, history: list) -> None:
    """Run ``ops`` ((method, n) pairs, with clock steps before each) on ``unit`` and ``oracle``."""
    for step, method, n in ops:
        clock.advance(step)
        history.append((clock.now, method, n))
        got = getattr(unit, method)(*([] if n is None else [n]))
        want = getattr(oracle, method)(clock.now, *([] if n is None else [n]))
        same = (math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12) if isinstance(want, Fraction)
                else _same_wait(got, want)) if isinstance(got, (int, float)) else False
        if not same:
            raise mismatch(f"{name}.{method}({'' if n is None else n}) at t={clock.now} after "
                           f"{len(history) - 1} calls", history[-6:], float(want) if isinstance(want, Fraction)
                           else want, got)


def check_token_bucket(TokenBucket, seed: int) -> None:
    """Over random arrivals under a hand-moved clock, take, wait and available equal an exact
    bucket's (full at first, refilled at its rate up to capacity, a refused take spends
    nothing, waits are the seconds until enough tokens, inf for more than capacity or at
    rate 0); with arrivals faster than the rate it admits exactly floor(capacity + rate * t)
    by time t, and no window [a, b] admits more than capacity + rate * (b - a); eight
    threads never overdraw it, nor are two inside a take at once; a capacity <= 0, a negative rate or n <= 0 is a ValueError."""
    rng = random.Random(seed)
    for _ in range(16):
        capacity = rng.choice([1, 2, 3, 5, 8, 20, 2.5])
        rate = rng.choice([0, 0.25, 0.5, 1, 2, 2.5, 10])
        clock = FakeClock(rng.randrange(10 ** 6) * TICK)
        bucket = TokenBucket(capacity, rate, clock)
        oracle = _OracleBucket(capacity, rate, clock.now)
        ops = [(rng.choice([0, 0, TICK, 2 * TICK, 0.5, 1, 3, rng.randrange(64) * TICK]),
                rng.choice(["take", "take", "take", "wait", "available"]),
                rng.choice([1, 1, 1, 2, 0.5, capacity, capacity + 1])) for _ in range(60)]
        _compare_ops(f"TokenBucket({capacity}, {rate})", bucket, oracle, clock,
                     [(s, m, None if m == "available" else n) for s, m, n in ops], [])
    for _ in range(6):  # saturated: more arrivals every tick than the bucket can serve
        capacity, rate = rng.randrange(1, 21), rng.choice([0.25, 0.5, 1, 2, 4, 8])
        clock = FakeClock(rng.randrange(10 ** 6) * TICK)
        bucket, admitted = TokenBucket(capacity, rate, clock), 0
        for tick in range(rng.randrange(64, 400)):
            admitted += sum(bucket.take(1) == 0 for _ in range(capacity + 2))
            want = math.floor(capacity + Fraction(rate) * tick * Fraction(TICK))
            if admitted != want:
                raise mismatch(f"TokenBucket({capacity}, {rate}) admitted by t={tick * TICK} s, "
                               "flooded with requests", "capacity + rate * t", want, admitted)
            clock.advance(TICK)
    # any window: never more than the burst plus what the rate refilled (a setting each)
    for capacity, rate in rng.sample([(c, r) for c in range(1, 6) for r in (0.25, 0.5, 1, 2)], 6):
        clock = FakeClock(0.0)
        bucket, times = TokenBucket(capacity, rate, clock), []
        for _ in range(80):
            clock.advance(rng.choice([0, TICK, 0.25, 1, rng.randrange(40) * TICK]))
            if bucket.take(1) == 0:
                times.append(Fraction(clock.now))
        for i in range(len(times)):
            for j in range(i, len(times)):
                if j - i + 1 > capacity + Fraction(rate) * (times[j] - times[i]):
                    raise mismatch(f"TokenBucket({capacity}, {rate}) admitted {j - i + 1} requests "
                                   f"between t={float(times[i])} and t={float(times[j])}",
                                   [float(t) for t in times], f"<= capacity + rate * window", j - i + 1)
    _check_threads(TokenBucket, rng)
    raises_value_error("TokenBucket with capacity 0", lambda: TokenBucket(0, 1, FakeClock()))
    raises_value_error("TokenBucket with a negative rate", lambda: TokenBucket(5, -1, FakeClock()))
    raises_value_error("TokenBucket.take(0)", lambda: TokenBucket(5, 1, FakeClock()).take(0))


class _CrowdClock(FakeClock):
    """A clock that counts the threads reading it at once (and lingers, so that they can meet)."""

    def __init__(self, now: float):
        super().__init__(now)
        self.inside = self.most = 0
        self._count = threading.Lock()

    def __call__(self) -> float:
        with self._count:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(1e-5)  # lets another thread run: it must find the bucket locked
        with self._count:
            self.inside -= 1
        return self.now


def _check_threads(TokenBucket, rng: random.Random) -> None:
    """Eight threads take from one bucket whose clock stands still: exactly capacity
    succeed, and no two are ever inside a take (reading its clock) at once."""
    capacity = rng.randrange(200, 400)
    clock = _CrowdClock(1.0)
    bucket = TokenBucket(capacity, 0, clock)
    wins, errors = [], []
    start = threading.Barrier(8)

    def hammer():
        try:
            start.wait()
            wins.append(sum(bucket.take(1) == 0 for _ in range(60)))
        except Exception as err:  # noqa: BLE001 - reported below, in this thread
            errors.append(err)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError(f"TokenBucket.take raised in a thread: {errors[0]!r}")
    if sum(wins) != capacity or bucket.available() != 0:
        raise mismatch(f"8 threads took 480 times from a bucket of {capacity} that never refills",
                       capacity, (capacity, 0), (sum(wins), bucket.available()))
    if clock.most > 1:
        raise AssertionError(f"{clock.most} threads were inside take at once (each reading the "
                             "clock): hold one lock while reading the clock and changing the bucket")


# ------------------------------------------------------------------------------- quotas

class _OracleQuota:
    def __init__(self, limit, period):
        self.limit, self.period, self.window, self.used = limit, Fraction(period), None, 0

    def _roll(self, now) -> Fraction:
        now = Fraction(now)
        window = math.floor(now / self.period)
        if self.window is None or window > self.window:
            self.window, self.used = window, 0
        return now

    def wait(self, now, n) -> float:
        now = self._roll(now)
        if n > self.limit:
            return math.inf
        return 0.0 if self.used + n <= self.limit else float((self.window + 1) * self.period - now)

    def use(self, now, n) -> float:
        wait = self.wait(now, n)
        if wait == 0:
            self.used += n
        return wait

    def remaining(self, now) -> Fraction:
        self._roll(now)
        return Fraction(self.limit - self.used)


def check_quota(Quota, seed: int) -> None:
    """Over random use under a hand-moved clock, use, wait and remaining equal an exact
    quota's: at most ``limit`` tokens in each window [k * period, (k + 1) * period), a
    refused use counts nothing, its wait is the time to the next window (inf for more than
    the limit); a limit or period <= 0, or n <= 0, is a ValueError."""
    rng = random.Random(seed)
    for _ in range(16):
        limit, period = rng.choice([1, 10, 100, 1000]), rng.choice([8, 16, 60, 3600, 86400])
        clock = FakeClock(rng.randrange(10 ** 6) * TICK)
        quota, oracle = Quota(limit, period, clock), _OracleQuota(limit, period)
        ops = []
        for _ in range(50):
            method = rng.choice(["use", "use", "use", "wait", "remaining"])
            n = rng.choice([1, max(1, limit // 3), max(1, limit // 2), limit, limit + 1, rng.randrange(1, limit + 1)])
            ops.append((rng.choice([0, 0, TICK, 1, period / 4, period, rng.randrange(64) * TICK]), method,
                        None if method == "remaining" else n))
        _compare_ops(f"Quota({limit}, {period})", quota, oracle, clock, ops, [])
    raises_value_error("Quota with limit 0", lambda: Quota(0, 60, FakeClock()))
    raises_value_error("Quota with period 0", lambda: Quota(10, 0, FakeClock()))
    raises_value_error("Quota.use(0)", lambda: Quota(10, 60, FakeClock()).use(0))


# ------------------------------------------------------------------ validating a request

BASE = {"model": "tinygpt", "messages": [{"role": "user", "content": "Where is the bank?"}]}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}
TOOL = {"type": "function", "function": {"name": "add", "description": "a + b",
                                         "parameters": {"type": "object"}}}


def _body(**fields) -> bytes:
    """BASE with ``fields`` set (a value of ... removes the field), as JSON bytes."""
    request = {**BASE, **fields}
    return json.dumps({k: v for k, v in request.items() if v is not ...}).encode()


def _chat(*messages) -> bytes:
    return _body(messages=list(messages))


_USER = {"role": "user", "content": "hi"}
_CALLER = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}

# (what, body, status, param): every request here must be refused with that status, naming
# that parameter (None: the body as a whole). Bodies are checked with max_bytes=LIMIT.
MALFORMED = [
    ("a body over the limit", _body(user="x" * LIMIT), 413, None),
    ("invalid UTF-8", b'{"model": "tinygpt\xff", "messages": []}', 400, None),
    ("a UTF-8 character cut short", _body(user="caf\u00e9").replace(b"\\u00e9", b"\xc3"), 400, None),
    ("an empty body", b"", 400, None),
    ("not JSON", b"model=tinygpt&messages=hi", 400, None),
    ("JSON cut short", _body()[:-5], 400, None),
    ("JSON nested 2,700 deep", b"{\"a\":" * 2700 + b"1" + b"}" * 2700, 400, None),
    ("a JSON array", b'[{"model": "tinygpt"}]', 400, None),
    ("a JSON string", b'"hello"', 400, None),
    ("JSON null", b"null", 400, None),
    ("a misspelt field", _body(temprature=0.5), 400, "temprature"),
    ("an unknown field", _body(functions=[]), 400, "functions"),
    ("no model", _body(model=...), 400, "model"),
    ("a model that is a number", _body(model=42), 400, "model"),
    ("an empty model", _body(model=""), 400, "model"),
    ("no messages", _body(messages=...), 400, "messages"),
    ("no messages at all", _body(messages=[]), 400, "messages"),
    ("messages as a string", _body(messages="hi"), 400, "messages"),
    ("a message that is a string", _chat("hi"), 400, "messages[0]"),
    ("a message without a role", _chat({"content": "hi"}), 400, "messages[0].role"),
    ("an unknown role", _chat({"role": "robot", "content": "hi"}), 400, "messages[0].role"),
    ("a role in capitals", _chat({"role": "User", "content": "hi"}), 400, "messages[0].role"),
    ("a user message without content", _chat({"role": "user"}), 400, "messages[0].content"),
    ("content that is a number", _chat({"role": "user", "content": 7}), 400, "messages[0].content"),
    ("content that is an empty list", _chat({"role": "user", "content": []}), 400, "messages[0].content"),
    ("an image part", _chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
     400, "messages[0].content"),
    ("a text part without text", _chat({"role": "user", "content": [{"type": "text"}]}), 400,
     "messages[0].content"),
    ("an unknown message field", _chat({"role": "user", "content": "hi", "weight": 2}), 400,
     "messages[0].weight"),
    ("a name that is a number", _chat({"role": "user", "content": "hi", "name": 5}), 400, "messages[0].name"),
    ("a bad second message", _chat(_USER, {"role": "assistant", "content": 7}), 400, "messages[1].content"),
    ("an assistant with neither content nor tool calls", _chat(_USER, {"role": "assistant"}), 400,
     "messages[1].content"),
    ("tool calls on a user message", _chat({**_USER, "tool_calls": [TOOL_CALL]}), 400, "messages[0].tool_calls"),
    ("an empty list of tool calls", _chat(_USER, {"role": "assistant", "content": "ok", "tool_calls": []}),
     400, "messages[1].tool_calls"),
    ("a tool call of another type", _chat(_USER, {**_CALLER, "tool_calls": [{**TOOL_CALL, "type": "fn"}]}),
     400, "messages[1].tool_calls"),
    ("a tool result without its call's id", _chat(_USER, _CALLER, {"role": "tool", "content": "2"}), 400,
     "messages[2].tool_call_id"),
    ("a tool call id on a user message", _chat({**_USER, "tool_call_id": "call_1"}), 400,
     "messages[0].tool_call_id"),
    ("max_tokens negative", _body(max_tokens=-1), 400, "max_tokens"),
    ("max_tokens zero", _body(max_tokens=0), 400, "max_tokens"),
    ("max_tokens a fraction", _body(max_tokens=1.5), 400, "max_tokens"),
    ("max_tokens a string", _body(max_tokens="100"), 400, "max_tokens"),
    ("max_tokens true", _body(max_tokens=True), 400, "max_tokens"),
    ("max_completion_tokens negative", _body(max_completion_tokens=-5), 400, "max_completion_tokens"),
    ("both max_tokens and max_completion_tokens", _body(max_tokens=5, max_completion_tokens=5), 400,
     "max_tokens"),
    ("temperature 3", _body(temperature=3), 400, "temperature"),
    ("temperature below 0", _body(temperature=-0.1), 400, "temperature"),
    ("temperature a string", _body(temperature="hot"), 400, "temperature"),
    ("temperature NaN", _body(temperature=float("nan")), 400, "temperature"),
    ("top_p above 1", _body(top_p=1.5), 400, "top_p"),
    ("top_p 0", _body(top_p=0), 400, "top_p"),
    ("frequency_penalty 2.5", _body(frequency_penalty=2.5), 400, "frequency_penalty"),
    ("presence_penalty -3", _body(presence_penalty=-3), 400, "presence_penalty"),
    ("five stop sequences", _body(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    ("stop a number", _body(stop=42), 400, "stop"),
    ("an empty stop sequence", _body(stop=[""]), 400, "stop"),
    ("stream a string", _body(stream="yes"), 400, "stream"),
    ("stream 1", _body(stream=1), 400, "stream"),
    ("tools an object", _body(tools={"add": TOOL}), 400, "tools"),
    ("tools an empty list", _body(tools=[]), 400, "tools"),
    ("a tool of another type", _body(tools=[{**TOOL, "type": "retrieval"}]), 400, "tools[0].type"),
    ("a tool without a function", _body(tools=[{"type": "function"}]), 400, "tools[0].function"),
    ("a function name with a space", _body(tools=[{"type": "function", "function": {"name": "add two"}}]),
     400, "tools[0].function.name"),
    ("two functions of one name", _body(tools=[TOOL, TOOL]), 400, "tools[1].function.name"),
    ("parameters that are not a schema object",
     _body(tools=[{"type": "function", "function": {"name": "f", "parameters": "object"}}]), 400,
     "tools[0].function.parameters"),
    ("seed a string", _body(seed="42"), 400, "seed"),
    ("seed negative", _body(seed=-1), 400, "seed"),
    ("seed 2**63", _body(seed=2 ** 63), 400, "seed"),
    ("n 0", _body(n=0), 400, "n"),
    ("n 9", _body(n=9), 400, "n"),
    ("user a number", _body(user=12), 400, "user"),
]

# Requests at the edges of the rules, every one to be accepted as it is.
VALID = [
    _body(),
    _body(user="x" * (LIMIT - len(_body(user="")))),  # exactly the limit
    _body(temperature=0, top_p=1, frequency_penalty=-2, presence_penalty=2, n=8, seed=0),
    _body(temperature=2, seed=2 ** 63 - 1, stream=False, stop="\n"),
    _body(stop=["a", "b", "c", "d"], max_completion_tokens=1, max_tokens=None, user="u"),
    _body(temperature=None, top_p=None, stop=None, tools=None, seed=None, n=None, stream=None),
    _chat({"role": "system", "content": ""}, {"role": "user", "content": [{"type": "text", "text": "hi"}]},
          {"role": "assistant", "content": "ok", "name": "bot"}, _USER),
    _chat(_USER, _CALLER, {"role": "tool", "content": "2", "tool_call_id": "call_1"}),
    _body(tools=[TOOL, {"type": "function", "function": {"name": "get-time_2"}}]),
    json.dumps({**BASE, "messages": [{"role": "user", "content": "caf\u00e9 \U0001f30a \"\\ \n"}]},
               ensure_ascii=False).encode(),
]

_TEXT = "abc xyz, \u00e9\u6cb3\U0001f30a\"\\\n"


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_TEXT) for _ in range(rng.randrange(0, 30)))


def _random_request(rng: random.Random) -> dict:
    """A random request that obeys every rule."""
    messages = [{"role": "system", "content": _text(rng)}] if rng.random() < 0.5 else []
    for turn in range(rng.randrange(1, 4)):
        messages.append({"role": "user", "content": _text(rng) if rng.random() < 0.7 else
                         [{"type": "text", "text": _text(rng)} for _ in range(rng.randrange(1, 3))]})
        if rng.random() < 0.3:
            messages += [{"role": "assistant", "content": rng.choice([None, _text(rng)]),
                          "tool_calls": [{**TOOL_CALL, "id": f"call_{turn}"}]},
                         {"role": "tool", "content": _text(rng), "tool_call_id": f"call_{turn}"}]
        messages.append({"role": "assistant", "content": _text(rng)})
    messages.append({"role": "user", "content": _text(rng)})
    request = {"model": rng.choice(["tinygpt", "tinygpt-chat", "m"]), "messages": messages}
    options = {
        "max_tokens": lambda: rng.randrange(1, 300), "temperature": lambda: rng.randrange(33) / 16,
        "top_p": lambda: rng.randrange(1, 17) / 16, "frequency_penalty": lambda: rng.randrange(-32, 33) / 16,
        "presence_penalty": lambda: rng.randrange(-32, 33) / 16, "stream": lambda: rng.random() < 0.5,
        "stop": lambda: rng.choice([_text(rng) + "!", [_text(rng) + "." for _ in range(rng.randrange(5))]]),
        "seed": lambda: rng.randrange(2 ** 63), "n": lambda: rng.randrange(1, 9), "user": lambda: _text(rng),
        "tools": lambda: [{"type": "function", "function": {"name": f"tool_{i}", "description": _text(rng)}}
                          for i in range(rng.randrange(1, 4))],
    }
    for name, value in options.items():
        if rng.random() < 0.35:
            request[name] = value() if rng.random() < 0.9 else None
    if rng.random() < 0.2 and request.get("max_tokens") is None:
        request["max_completion_tokens"] = rng.randrange(1, 300)
    return request


def _fault(rng: random.Random, request: dict) -> tuple[bytes, int, str | None]:
    """``request`` with one rule broken, as a body; the status and the parameter to name."""
    request = json.loads(json.dumps(request))
    plain = [i for i, m in enumerate(request["messages"]) if m["role"] in ("system", "user")]
    i = rng.choice(plain)
    faults = {
        "unknown": lambda: ("x_" + "".join(rng.choice("abcdefgh") for _ in range(5)), rng.randrange(9)),
        "temperature": lambda: ("temperature", rng.choice([2 + rng.randrange(1, 99) / 16, -rng.randrange(1, 99) / 16])),
        "top_p": lambda: ("top_p", rng.choice([0, 1 + rng.randrange(1, 99) / 16, -0.5])),
        "max_tokens": lambda: ("max_tokens", rng.choice([0, -rng.randrange(1, 10 ** 6), 0.5, "12"])),
        "stop": lambda: ("stop", [_text(rng) + "!" for _ in range(rng.randrange(5, 9))]),
        "n": lambda: ("n", rng.choice([0, rng.randrange(9, 200), 2.0])),
        "seed": lambda: ("seed", rng.choice([-rng.randrange(1, 10 ** 9), 2 ** 63 + rng.randrange(99), "7"])),
        "stream": lambda: ("stream", rng.choice([0, 1, "true", "false"])),
        "model": lambda: ("model", rng.choice([7, ["tinygpt"], "", {"name": "m"}])),
        "messages": lambda: ("messages", rng.choice([[], "hi", {"role": "user"}])),
    }
    kind = rng.choice(list(faults) + ["role", "content", "message_field", "tool_name", "size",
                                      "utf8", "truncated"])
    body_of = lambda r: json.dumps(r, ensure_ascii=rng.random() < 0.5).encode()  # noqa: E731
    if kind in faults:
        name, value = faults[kind]()
        if name == "max_tokens":
            request.pop("max_completion_tokens", None)
        request[name] = value
        return body_of(request), 400, name
    if kind == "role":
        request["messages"][i]["role"] = rng.choice(["robot", "USER", "", "System", 3])
        return body_of(request), 400, f"messages[{i}].role"
    if kind == "content":
        request["messages"][i]["content"] = rng.choice([5, None, [], [{"type": "text", "text": 1}], {"t": 1}])
        return body_of(request), 400, f"messages[{i}].content"
    if kind == "message_field":
        field = rng.choice(["weight", "id", "metadata", "tool"])
        request["messages"][i][field] = _text(rng)
        return body_of(request), 400, f"messages[{i}].{field}"
    if kind == "tool_name":
        tools = request.get("tools") or []
        tools = tools + [{"type": "function", "function": {"name": rng.choice(["a b", "", "x" * 65, "f()", 9])}}]
        request["tools"] = tools
        return body_of(request), 400, f"tools[{len(tools) - 1}].function.name"
    body = body_of(request)
    if kind == "size":
        request["user"] = "y" * (LIMIT + rng.randrange(1, 100))
        return body_of(request), 413, None
    if kind == "utf8":
        at = body.index(b'"content": "') + len(b'"content": "')
        return body[:at] + rng.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80"]) + body[at:], 400, None
    return body[:rng.randrange(len(body) - 1)], 400, None


def _expect_refusal(validate_request, what: str, body: bytes, status: int, param) -> None:
    err = _refusal(f"validate_request on {what}", lambda: validate_request(body, max_bytes=LIMIT))
    got = (err.status, getattr(err, "param", "(none)"))
    if got != (status, param) or getattr(err, "type", None) != "invalid_request_error":
        raise mismatch(f"validate_request on {what}: (status, param), and type invalid_request_error",
                       body, (status, param), got + (getattr(err, "type", None),))


def check_validate_request(validate_request, seed: int) -> None:
    """Every body of ``MALFORMED`` (seed 0) and 40 random requests with one rule broken
    (every seed) are refused with their status (413 or 400), their parameter and type
    ``invalid_request_error``; the requests of ``VALID`` and 40 random valid ones are
    returned as they were decoded."""
    rng = random.Random(seed)
    if seed == 0:
        for what, body, status, param in MALFORMED:
            _expect_refusal(validate_request, what, body, status, param)
        valid = [json.loads(b) for b in VALID]
    else:
        valid = []
    valid += [_random_request(rng) for _ in range(40)]
    for request in valid:
        body = json.dumps(request, ensure_ascii=rng.random() < 0.5).encode()
        try:
            got = validate_request(body, max_bytes=LIMIT)
        except Exception as err:  # noqa: BLE001 - a refusal of a valid request is the finding
            raise mismatch("validate_request refused a valid request", body, "the request",
                           f"{type(err).__name__}: {err} (param {getattr(err, 'param', None)!r})") from None
        if got != json.loads(body):
            raise mismatch("validate_request must return the request as decoded", body, request, got)
    for _ in range(40):
        body, status, param = _fault(rng, _random_request(rng))
        _expect_refusal(validate_request, "a request with one fault", body, status, param)


# ------------------------------------------------------------------------------ admission

def _cost(request: dict) -> int:
    """The chapter's token_cost: prompt characters / 4 (rounded up) + max tokens * n."""
    chars = 0
    for m in request["messages"]:
        content = m.get("content")
        chars += len(content) if isinstance(content, str) else sum(
            len(p["text"]) for p in content) if isinstance(content, list) else 0
    out = request.get("max_completion_tokens") or request.get("max_tokens") or DEFAULT_MAX_TOKENS
    return math.ceil(chars / 4) + out * (request.get("n") or 1)


class _OracleGateway:
    """The admission rules, in exact arithmetic, for one key's limits at a time."""

    def __init__(self, rpm, tpm, tpd):
        self.rpm, self.tpm, self.tpd, self.limits = rpm, tpm, tpd, {}

    def charge(self, key_id: str, now, request: dict) -> tuple[int, dict, tuple | None]:
        if key_id not in self.limits:
            self.limits[key_id] = (_OracleBucket(self.rpm, Fraction(self.rpm, 60), now),
                                   _OracleBucket(self.tpm, Fraction(self.tpm, 60), now),
                                   _OracleQuota(self.tpd, 86400))
        requests, tokens, quota = self.limits[key_id]
        cost = _cost(request)
        waits = {"requests": requests.wait(now, 1), "tokens": tokens.wait(now, cost)}
        headers = self._headers(now, requests, tokens)
        limited = [k for k, w in waits.items() if w > 0]
        if limited:
            wait, error = max(waits.values()), (limited[0], None, "rate_limit_exceeded")
        elif (wait := quota.wait(now, cost)) > 0:
            error = ("insufficient_quota", None, "insufficient_quota")
        else:
            requests.take(now, 1)
            tokens.take(now, cost)
            quota.use(now, cost)
            return 200, self._headers(now, requests, tokens), None
        if wait != math.inf:
            headers["retry-after"] = str(math.ceil(wait))
        return 429, headers, error

    def _headers(self, now, requests, tokens) -> dict:
        return {"x-ratelimit-limit-requests": str(self.rpm), "x-ratelimit-limit-tokens": str(self.tpm),
                "x-ratelimit-remaining-requests": str(math.floor(requests.available(now))),
                "x-ratelimit-remaining-tokens": str(math.floor(tokens.available(now)))}


def check_gateway(Gateway, KeyStore, seed: int) -> None:
    """Under a hand-moved clock, 150 random requests from several keys get what the rules
    say, in their order: a missing, wrong, revoked or out-of-scope key 401 (before anything
    else), a body over the limit 413 (before it is parsed), a malformed one 400 naming the
    parameter, then 429 when the key's requests or tokens per minute are spent
    (``rate_limit_exceeded``, its type "requests" or "tokens") or its tokens per day
    (``insufficient_quota``), with ``retry-after`` in whole seconds; admitted ones 200
    with the request; 200 and 429 carry the ``x-ratelimit-*`` headers, earlier refusals
    none; refused requests are charged nothing."""
    rng = random.Random(seed)
    clock = FakeClock(rng.randrange(10 ** 7) * TICK)
    store = KeyStore(rng.randbytes(32))
    live = [store.create(f"team-{i}") for i in range(3)]
    other = store.create("reader", ("embeddings",))
    gone = store.create("former")
    store.revoke(gone[3:19])
    rpm, tpm = rng.choice([15, 30, 60, 120]), rng.choice([960, 1920, 3840])
    tpd = rng.choice([3000, 10000, 40000])
    gateway = Gateway(store, rpm, tpm, tpd, clock=clock, max_bytes=LIMIT)
    oracle, log = _OracleGateway(rpm, tpm, tpd), []
    for step in range(150):
        clock.advance(rng.choice([0, 0, TICK, 0.25, 1, 4, 30, rng.randrange(10 ** 6) * TICK]))
        key = rng.choice(live)
        request = _random_request(rng)
        request.pop("max_completion_tokens", None)
        request["max_tokens"] = rng.choice([None, 16, 64, 200, 1000])
        body = json.dumps(request).encode()
        kind = rng.choice(["ok"] * 6 + ["no key", "basic", "wrong", "revoked", "scope", "big", "bad",
                                        "wrong and big", "big and bad"])
        if kind in ("bad", "big", "big and bad"):
            body, status, param = _fault(rng, request)
            if kind != "bad":
                body, status, param = body + b" " * LIMIT, 413, None
        header = {"no key": None, "basic": f"Basic {key}", "wrong": f"Bearer {key[:-1]}{_flip(key[-1])}",
                  "revoked": f"Bearer {gone}", "scope": f"Bearer {other}",
                  "wrong and big": f"Bearer tg-{rng.randbytes(24).hex()}"}.get(kind, f"Bearer {key}")
        headers = {} if header is None else {rng.choice(["Authorization", "authorization"]): header}
        if kind == "wrong and big":
            body += b" " * LIMIT
        if header != f"Bearer {key}":
            want = (401, {}, ("invalid_request_error", None, "missing_scope" if kind == "scope" else "invalid_api_key"))
        elif kind in ("big", "big and bad", "bad"):
            want = (status, {}, ("invalid_request_error", param, "request_too_large" if status == 413 else None))
        else:
            want = oracle.charge(key[3:19], clock.now, request)
        got = gateway.admit(headers, body)
        log.append((clock.now, kind, want[0]))
        error = getattr(got, "body", None)
        fields = None
        if isinstance(error, dict) and isinstance(error.get("error"), dict):
            e = error["error"]
            fields = (e.get("type"), e.get("param"), e.get("code"))
            if not (isinstance(e.get("message"), str) and e["message"]):
                raise mismatch("an error needs a message", body[:200], "a message", e)
            if want[0] == 400:
                fields = (e.get("type"), e.get("param"), None)  # a 400's code is the gateway's choice
        seen = (getattr(got, "status", None), getattr(got, "headers", None), fields)
        if seen != want or (want[0] == 200) != (getattr(got, "request", None) == request):
            raise mismatch(f"admit at step {step + 1} ({kind}; the last steps: (time, kind, status) "
                           f"{log[-5:]}): (status, headers, error (type, param, code))",
                           (headers, body[:200]), want, seen + (getattr(got, "request", None) is not None,))
