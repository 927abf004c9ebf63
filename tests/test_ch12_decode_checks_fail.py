"""Every check of chapter 12's decode notebook rejects a plausible wrong answer."""
from __future__ import annotations

from tinygpt.checks.ch12 import decode as checks
from tinygpt.engine import decode as d
from conftest import mutant_tests


class _NoHoldback(d.StopMatcher):  # sends a stop's beginning before knowing
    def push(self, text):
        if self.stopped:
            return ""
        data, self.held = self.held + text, ""
        found = [i for i in (data.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            return data[:min(found)]
        return data


class _NewTextOnly(d.StopMatcher):  # looks for stops in the new piece only
    def push(self, text):
        if self.stopped:
            return ""
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            return self.held + text[:min(found)]
        return text


class _SendsTheStop(d.StopMatcher):  # the stop sequence itself reaches the client
    def push(self, text):
        before = self.held + text
        out = super().push(text)
        if self.stopped and before:
            stop = min((s for s in self.stops if s in before), key=before.find)
            return before[:before.find(stop) + len(stop)]
        return out


class _HoldsEverything(d.StopMatcher):  # correct in the end, but streams nothing
    def push(self, text):
        if self.stopped:
            return ""
        self.held += text
        found = [i for i in (self.held.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped, out, self.held = True, self.held[:min(found)], ""
            return out
        return ""


class _FirstListedStop(d.StopMatcher):  # cuts at the first stop in the list, not the earliest
    def push(self, text):
        if self.stopped:
            return ""
        data = self.held + text
        for s in self.stops:
            if s in data:
                self.stopped, self.held = True, ""
                return data[:data.find(s)]
        return super().push(text)


def _generate_eos_as_text(model, tokenizer, prompt, params=d.SamplingParams(temperature=0.0),
                          max_tokens=16, stop=(), eos=None):
    return d.generate(model, tokenizer, prompt, params, max_tokens, stop, None)


def _generate_one_short(model, tokenizer, prompt, params=d.SamplingParams(temperature=0.0),
                        max_tokens=16, stop=(), eos=None):
    events = list(d.generate(model, tokenizer, prompt, params, max_tokens, stop, eos))
    if len(events) > 1 and events[-1].finish_reason == "length":
        last = events[-2]
        return iter(events[:-2] + [d.Event(last.token, last.text, "length")])
    return iter(events)


def _generate_token_by_token_text(model, tokenizer, prompt, params=d.SamplingParams(temperature=0.0),
                                  max_tokens=16, stop=(), eos=None):  # half characters become U+FFFD
    for e in d.generate(model, tokenizer, prompt, params, max_tokens, (), eos):
        yield d.Event(e.token, tokenizer.decode([e.token]) if e.token is not None else "", e.finish_reason)


def _generate_always_length(model, tokenizer, prompt, params=d.SamplingParams(temperature=0.0),
                            max_tokens=16, stop=(), eos=None):
    events = list(d.generate(model, tokenizer, prompt, params, max_tokens, stop, eos))
    return iter(events[:-1] + [d.Event(events[-1].token, events[-1].text, "length")])


def _generate_checks_late(model, tokenizer, prompt, params=d.SamplingParams(temperature=0.0),
                          max_tokens=16, stop=(), eos=None):  # a generator: checks on first read
    yield from d.generate(model, tokenizer, prompt, params, max_tokens, stop, eos)


MUTANTS = [
    (checks.check_stop_matcher, (_NoHoldback,)),
    (checks.check_stop_matcher, (_NewTextOnly,)),
    (checks.check_stop_matcher, (_SendsTheStop,)),
    (checks.check_stop_matcher, (_HoldsEverything,)),
    (checks.check_stop_matcher, (_FirstListedStop,)),
    (checks.check_generate, (_generate_eos_as_text,)),
    (checks.check_generate, (_generate_one_short,)),
    (checks.check_generate, (_generate_token_by_token_text,)),
    (checks.check_generate, (_generate_always_length,)),
    (checks.check_generate, (_generate_checks_late,)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
