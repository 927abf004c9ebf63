"""The course's control tokens: the special tokens every tokenizer trained for the model reserves.

Hand-written infrastructure beside chapter 2's tokenizer. Pre-training (chapter 3)
trains its tokenizer with all of them, so that post-training (chapter 4), prompt
assembly (chapter 8), tools (chapter 13) and thinking (chapter 14) find their tokens in
the one vocabulary and the one checkpoint format, without retraining or resizing the
embedding. Only ``EOT`` occurs in pre-training text (between documents); the others are
placed by ``tinygpt.posttraining.template`` and never come from text a user typed.
"""
from __future__ import annotations

EOT = "<|endoftext|>"        # between documents, and the end of a completion
SYSTEM = "<|system|>"        # a turn's role: the system prompt
USER = "<|user|>"            # ... a user message
ASSISTANT = "<|assistant|>"  # ... the model's answer
TOOL = "<|tool|>"            # ... a tool's result
END = "<|end|>"              # the end of any turn
TOOL_CALL = "<|tool_call|>"  # opens a tool call inside an assistant turn
END_TOOL_CALL = "<|/tool_call|>"
THINK = "<|think|>"          # opens a thinking region inside an assistant turn
END_THINK = "<|/think|>"

ROLES = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT, "tool": TOOL}
CONTROL_TOKENS = (EOT, SYSTEM, USER, ASSISTANT, TOOL, END, TOOL_CALL, END_TOOL_CALL,
                  THINK, END_THINK)
