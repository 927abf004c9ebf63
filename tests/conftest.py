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
