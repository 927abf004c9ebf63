"""Property checks for chapter 5 (evaluation), written once and run against anyone's code.

``metrics`` holds notebook 1's checks (perplexity and bits per byte, multiple choice,
exact match, pass@k) and ``stats`` notebook 2's (bootstrap intervals, Bradley-Terry,
Elo, contamination); a notebook imports its checks from here. Notebook test cells call
these on the learner's functions (visible cells with seed 0, hidden cells with fresh
seeds); pytest calls the same checks on the exported reference. Every check compares
with an oracle written out in the check and runs on the CPU without printing.

Imports: chapters 1-4's reference and nothing later.
"""
from __future__ import annotations

from tinygpt.checks.common import written_here
from tinygpt.checks.ch05.metrics import (check_choices, check_exact_match, check_pass_at_k,
                                         check_text_metrics, check_token_nll)
from tinygpt.checks.ch05.stats import (check_bootstrap_ci, check_bradley_terry,
                                       check_contamination, check_elo, check_paired_bootstrap)

__all__ = ["written_here", "check_token_nll", "check_text_metrics", "check_choices",
           "check_exact_match", "check_pass_at_k", "check_bootstrap_ci", "check_paired_bootstrap",
           "check_bradley_terry", "check_elo", "check_contamination"]
