"""Shared pytest set-up: the gpu marker skips without CUDA; paths of the repository; the
mutant count that the chapters' checks-can-fail tests share."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def seeds_rejecting(check, units: tuple, seeds: int) -> int:
    """On how many of ``seeds`` seeds ``check(*units, seed=...)`` rejects (AssertionError)."""
    failures = 0
    for seed in range(seeds):
        try:
            check(*units, seed=seed)
        except AssertionError:
            failures += 1
    return failures


def _units_name(x) -> str:
    return "+".join(getattr(u, "__name__", "fn") for u in x) if isinstance(x, tuple) else \
        getattr(x, "__name__", "check")


def _check_names(checks) -> set[str]:
    return {n for n in checks.__all__ if n.startswith("check_")}


def reference_tests(reference: list, checks, seeds: range):
    """A chapter's reference-passes-its-checks tests: every check of ``checks`` has an entry
    in ``reference`` (check, reference units), and each passes on every seed."""
    def test_every_check_is_run_on_the_reference():
        assert {c.__name__ for c, _ in reference} == _check_names(checks)

    @pytest.mark.parametrize("seed", seeds)
    @pytest.mark.parametrize("check,units", reference, ids=_units_name)
    def test_reference_passes_its_checks(check, units, seed):
        check(*units, seed=seed)

    return test_every_check_is_run_on_the_reference, test_reference_passes_its_checks


class _Stub:
    """An unwritten graded unit: calling it, or anything on it (a classmethod), raises."""

    def __call__(self, *args, **kwargs):
        raise NotImplementedError

    def __getattr__(self, name):
        return self


def mutant_tests(mutants: list, checks):
    """A chapter's checks-can-fail tests: each check rejects its mutant on at least 3 of 4
    seeds, every check of ``checks`` has a mutant, and stubs fail every check."""
    @pytest.mark.parametrize("check,units", mutants, ids=_units_name)
    def test_check_rejects_a_wrong_answer(check, units):
        failures = seeds_rejecting(check, units, 4)
        assert failures >= 3, f"{check.__name__} let a wrong answer through on {4 - failures} seeds"

    def test_every_check_has_a_mutant():
        assert {c.__name__ for c, _ in mutants} == _check_names(checks)

    def test_stubs_fail_every_check():
        for check, units in mutants:
            with pytest.raises((NotImplementedError, AssertionError)):
                check(*[_Stub()] * len(units), seed=0)

    return test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant, test_stubs_fail_every_check
