"""Benchmark: chapter 7's admission checks per second on one core, against pydantic.

What it measures: requests/s (median of ``--repeats`` runs of ``--requests`` calls each,
``time.perf_counter``, one thread, one process) through ``Gateway.admit``, the whole
gateway (the key's HMAC and constant-time comparison, the size, every field of the
chat-completions body, the requests and tokens buckets and the daily quota), on a
realistic request (a system prompt, three turns, a tool, sampling options: about 1.5 kB);
limits high enough that every request is admitted and charged. Side by side, in one run:

* ``Gateway.admit`` refusing at each step: a wrong key (401), a malformed body (400,
  ``temperature`` 3, found after every other field), a spent rate limit (429);
* ``validate_request`` alone (the body step), and ``json.loads`` alone, the floor under
  any validator that parses the body;
* the peer: pydantic 2 (Rust core, ``model_validate_json``) on a model of the same
  request (the same fields, types, ranges and roles, unknown fields forbidden; the
  cross-field rules, such as tool_call_id only on tool messages, left out), the
  validation step a FastAPI server would run.

Every path is checked first: admitted requests are 200 and equal the body, each refusal
has its status, and pydantic accepts the request and refuses the malformed one.
The issue's goal: the whole admission at 50,000 requests/s or more on one core. The
record also holds the size of the chapter's table of malformed requests, which the
book quotes.

Run: ``make bench`` or ``.venv/bin/python bench/gateway_admission.py``.
Output: a table, then one JSON line; the same JSON, with machine info, goes to
bench/results/gateway_admission.json (read by the chapter 7 book page).
"""
from __future__ import annotations

import argparse
import json
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from _common import print_table, report, timed
from tinygpt.checks.ch07 import MALFORMED
from tinygpt.runtime import machine_info
from tinygpt.service.gateway import Gateway, KeyStore, validate_request

REQUEST = {
    "model": "tinygpt-chat",
    "messages": [
        {"role": "system", "content": "You answer questions about the river town. " * 8},
        {"role": "user", "content": "Who keeps the bank by the river, and since when?"},
        {"role": "assistant", "content": "The miller's family has kept it for three generations."},
        {"role": "user", "content": [{"type": "text", "text": "And how many boats are there? " * 4}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                               "function": {"name": "count", "arguments": "{}"}}]},
        {"role": "tool", "content": "12", "tool_call_id": "call_1"},
        {"role": "user", "content": "Thanks. Add the ferry, please."},
    ],
    "tools": [{"type": "function", "function": {"name": "count", "description": "counts boats",
                                                "parameters": {"type": "object", "properties": {}}}}],
    "max_tokens": 200, "temperature": 0.7, "top_p": 0.95, "stop": ["\n\n", "User:"], "seed": 1234,
    "stream": False, "user": "bench",
}


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class Function(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1)
    arguments: str


class Call(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str = Field(min_length=1)
    type: Literal["function"]
    function: Function


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "user", "assistant", "tool"]
    content: Union[str, list[Text], None] = None
    name: Optional[str] = Field(default=None, min_length=1)
    tool_calls: Optional[list[Call]] = Field(default=None, min_length=1)
    tool_call_id: Optional[str] = Field(default=None, min_length=1)


class ToolFunction(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: Optional[str] = None
    parameters: Optional[dict] = None


class Tool(BaseModel):
    model_config = ConfigDict(strict=True)
    type: Literal["function"]
    function: ToolFunction


class ChatRequest(BaseModel):
    """The chat-completions request as pydantic would check it (no cross-field rules)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(default=None, ge=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: Optional[float] = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2, allow_inf_nan=False)
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2, allow_inf_nan=False)
    stop: Union[str, list[str], None] = Field(default=None, max_length=4)
    stream: Optional[bool] = None
    tools: Optional[list[Tool]] = Field(default=None, min_length=1)
    seed: Optional[int] = Field(default=None, ge=0, lt=2 ** 63)
    n: Optional[int] = Field(default=None, ge=1, le=8)
    user: Optional[str] = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (median reported)")
    args = parser.parse_args()

    body = json.dumps(REQUEST).encode()
    bad = json.dumps({**REQUEST, "temperature": 3}).encode()
    store = KeyStore(b"a bench secret of thirty-two b..")
    keys = [store.create(f"team-{i}") for i in range(100)]
    huge = 10 ** 12
    gateway = Gateway(store, huge, huge, huge)  # the real clock, time.time
    limited = Gateway(store, 1, huge, huge)     # refills 1/60 of a request a second
    auth = {"Authorization": f"Bearer {keys[7]}"}
    wrong = {"Authorization": f"Bearer {keys[7][:-4]}0000"}
    limited.admit(auth, body)  # spends the key's one request a minute

    expected = {"admitted": 200, "wrong key": 401, "malformed": 400, "rate limited": 429}
    paths = {
        "admitted": lambda: gateway.admit(auth, body),
        "wrong key": lambda: gateway.admit(wrong, body),
        "malformed": lambda: gateway.admit(auth, bad),
        "rate limited": lambda: limited.admit(auth, body),
    }
    for name, call in paths.items():
        out = call()
        assert out.status == expected[name], (name, out.status, out.body)
    assert gateway.admit(auth, body).request == REQUEST
    assert ChatRequest.model_validate_json(body).temperature == 0.7
    try:
        ChatRequest.model_validate_json(bad)
        raise SystemExit("pydantic accepted temperature 3")
    except ValueError:
        pass

    def loop(call):
        def run():  # results are dropped at once: a list of 20,000 dicts would time the GC
            for _ in range(args.requests):
                call()
        return run

    steps = {**paths, "validate_request alone": lambda: validate_request(body),
             "json.loads alone": lambda: json.loads(body),
             "pydantic model_validate_json": lambda: ChatRequest.model_validate_json(body)}
    seconds, runs = {}, {}
    for name, call in steps.items():
        seconds[name], runs[name], _ = timed(loop(call), args.repeats)
    per_s = {k: args.requests / s for k, s in seconds.items()}
    print(f"{len(body):,}-byte request, {args.requests:,} calls per run, median of {args.repeats} "
          "runs, one thread\n")
    print_table(["path", "requests/s", "us/request", "x pydantic"],
                [[k, f"{v:,.0f}", f"{1e6 / v:.1f}", f"{v / per_s['pydantic model_validate_json']:.2f}x"]
                 for k, v in per_s.items()])
    keys_of = {"admitted": "admit", "wrong key": "refuse_key", "malformed": "refuse_body",
               "rate limited": "refuse_rate", "validate_request alone": "validate",
               "json.loads alone": "json_loads", "pydantic model_validate_json": "pydantic"}
    summary = {"bench": "gateway_admission", "body_bytes": len(body), "requests": args.requests,
               "repeats": args.repeats,
               "per_s": {keys_of[k]: round(v) for k, v in per_s.items()},
               "us_per_request": {keys_of[k]: round(1e6 / v, 2) for k, v in per_s.items()},
               "ratio_validate_over_pydantic": round(per_s["validate_request alone"]
                                                     / per_s["pydantic model_validate_json"], 3),
               "goal_admit_per_s": 50_000, "malformed_table": len(MALFORMED)}
    details = {"runs_seconds": {keys_of[k]: [round(t, 4) for t in v] for k, v in runs.items()},
               "machine": machine_info(["tinygpt", "pydantic", "pydantic_core"])}
    report("gateway_admission", summary, details)


if __name__ == "__main__":
    main()
