"""Property checks for chapter 6 (deployment preparation), written once and run against
anyone's code.

One module per notebook (``quantize`` for notebook 1's schemes, ``model`` for notebook
2's layer, model conversion and file format); a notebook imports its checks from here.
Notebook test cells call these on the learner's functions and classes (visible cells
with seed 0, hidden cells with fresh seeds); pytest calls the same checks on the
exported reference. Every check compares with an oracle written out in the check (plain
Python, group by group) and runs on the CPU without printing.

Imports: chapters 1-3's reference and nothing later.
"""
from __future__ import annotations

from tinygpt.checks.common import written_here
from tinygpt.checks.ch06.quantize import check_int4, check_int8, check_pack_int4
from tinygpt.checks.ch06.model import (check_quant_linear, check_quantize_model,
                                       check_save_load, check_weight_bytes)

__all__ = ["written_here", "check_int8", "check_pack_int4", "check_int4", "check_quant_linear",
           "check_quantize_model", "check_weight_bytes", "check_save_load"]
