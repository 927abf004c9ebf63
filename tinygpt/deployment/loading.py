"""One loader for every model folder the course writes, float or quantised.

Hand-written for chapter 6; chapters 10-12 (prefill, sampling, decode) and the
capstone's server call :func:`load` and never ask which kind of folder they were given:
a chapter-3 or chapter-4 checkpoint (``tinygpt-checkpoint``) comes back through
``load_model``, a quantised folder (``tinygpt-quantized``) through ``load_quantized``.
Both check the folder before they build anything, so a bad folder is a ``ValueError``
that says what is wrong, never a silently different model. :func:`load_tokenizer`
reads the tokenizer that ``python -m tinygpt.quantize`` copies next to the weights.
"""
from __future__ import annotations

import json
from pathlib import Path

from tinygpt.deployment.quantized import FORMAT as QUANTIZED, load_quantized
from tinygpt.pretraining.checkpoint import FORMAT as CHECKPOINT, load_model
from tinygpt.pretraining.model import GPT
from tinygpt.pretraining.trainer import run_tokenizer
from tinygpt.tokenizer import Tokenizer


def folder_format(directory: str | Path) -> str:
    """The ``format`` that a model folder's config.json declares; ``ValueError`` if none."""
    path = Path(directory) / "config.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{directory}: not a model folder ({err})") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in (CHECKPOINT, QUANTIZED):
        raise ValueError(f"{directory}: format {fmt!r} is neither {CHECKPOINT!r} nor "
                         f"{QUANTIZED!r}")
    return fmt


def load(directory: str | Path, device: str = "cpu") -> GPT:
    """The model in ``directory`` (a checkpoint or a quantised folder), on ``device``, in eval mode."""
    if folder_format(directory) == QUANTIZED:
        return load_quantized(directory, device)
    return load_model(directory, device)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer saved with a model folder (a checkpoint without one: its training's)."""
    directory = Path(directory)
    if folder_format(directory) == QUANTIZED and not (directory / "tokenizer.json").exists():
        raise ValueError(f"{directory}: a quantised folder without tokenizer.json (python -m "
                         "tinygpt.quantize copies the checkpoint's)")
    return run_tokenizer(directory)
