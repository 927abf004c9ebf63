"""Property checks for chapter 5 (evaluation), written once and run against anyone's code.

``metrics`` holds notebook 1's checks (perplexity and bits per byte, multiple choice,
exact match, pass@k); a notebook imports its checks from here. Notebook test cells call
these on the learner's functions (visible cells with seed 0, hidden cells with fresh
seeds); pytest calls the same checks on the exported reference. Every check compares
with an oracle written out in the check and runs on the CPU without printing.

Imports: chapters 1-4's reference and nothing later.
"""
from __future__ import annotations

from tinygpt.checks.common import written_here
from tinygpt.checks.ch05.metrics import (check_choices, check_exact_match, check_pass_at_k,
                                         check_text_metrics, check_token_nll)

__all__ = ["written_here", "check_token_nll", "check_text_metrics", "check_choices",
           "check_exact_match", "check_pass_at_k"]
