"""Every check of chapter 12's continuous-batching notebook rejects a plausible wrong answer."""
from __future__ import annotations

from tinygpt.checks.ch12 import batching as checks
from tinygpt.engine import scheduler as sch
from tinygpt.engine.sampling import SamplingBatch
from conftest import mutant_tests


class _AcceptsDuplicates(sch.Scheduler):  # a second request with a running id is queued
    def submit(self, request):
        if request.id in {r.id for r in self.waiting} | set(self.running):
            self.waiting.append(request)
            return
        super().submit(request)


class _NoWindowCheck(sch.Scheduler):  # a request past the context window is queued anyway
    def submit(self, request):
        try:
            super().submit(request)
        except ValueError:
            if request.prompt and request.max_tokens and isinstance(request.max_tokens, int):
                self.waiting.append(request)
            else:
                raise


class _NoBudget(sch.Scheduler):  # admits whatever the blocks allow
    def admit(self):
        budget, self.max_batch_tokens = self.max_batch_tokens, 10 ** 9
        try:
            return super().admit()
        finally:
            self.max_batch_tokens = budget


class _Overtaking(sch.Scheduler):  # a small request passes a big one that does not fit
    def admit(self):
        admitted, skipped = [], []
        while self.waiting:
            admitted += super().admit()
            if self.waiting:
                skipped.append(self.waiting.popleft())
        self.waiting.extend(skipped)
        return admitted


class _Leaky(sch.Scheduler):  # finished requests keep their blocks
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache.release = lambda rid: None


class _FreshGenerators(sch.Scheduler):  # each step re-seeds every request's generator
    def step(self):
        for state in self.running.values():
            state.sampling = SamplingBatch.build([state.request.params], self.model.config.vocab_size)
        return super().step()


class _NoCommitment(sch.Scheduler):  # admission counts only the prompt's blocks
    def admit(self):
        budget = self.max_batch_tokens
        tokens, admitted = len(self.running), []
        used = sum(sch.blocks_for(len(s.request.prompt) + s.generated + 1, self.block_size)
                   for s in self.running.values())
        while self.waiting:
            request = self.waiting[0]
            fits = tokens + len(request.prompt) <= budget or (not self.running and not admitted)
            if not fits or used + sch.blocks_for(len(request.prompt), self.block_size) > self.n_blocks:
                break
            self.waiting.popleft()
            tokens += len(request.prompt)
            used += sch.blocks_for(len(request.prompt), self.block_size)
            admitted.append(request)
            self._prefill(request)
        return admitted


MUTANTS = [
    (checks.check_submit, (_AcceptsDuplicates,)),
    (checks.check_submit, (_NoWindowCheck,)),
    (checks.check_admission, (_NoBudget,)),
    (checks.check_admission, (_Overtaking,)),
    (checks.check_admission, (_NoCommitment,)),
    (checks.check_continuous, (_Leaky,)),
    (checks.check_continuous, (_FreshGenerators,)),
]

(test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant,
 test_stubs_fail_every_check) = mutant_tests(MUTANTS, checks)
