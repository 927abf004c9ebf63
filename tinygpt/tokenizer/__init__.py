"""Chapter 2, tokenizer training: byte-level BPE with GPT-4 pre-tokenisation.

``primitives``, ``bpe`` and ``tokenizer`` are generated from the chapter's solution
notebooks; ``openai`` (hand-written) loads real cl100k/o200k for comparison.
"""
from tinygpt.tokenizer.tokenizer import Tokenizer

__all__ = ["Tokenizer"]
