"""Shared utilities every step may import: the one device choice and the paths.

CPU is the default everywhere; ``pick_device("auto")`` takes CUDA when it is present.
``has_c_compiler`` says whether ``torch.compile`` can build its CPU kernels here.
``cache_key`` names a cached artefact by what made it, so that changed code rebuilds it.
``machine_info`` says where a measurement came from (the CPU model included), for every
record a benchmark or a training run writes.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE.parent
CACHE_DIR = Path(os.environ.get("TINYGPT_CACHE", REPO_ROOT / ".cache"))


def cache_key(*parts, code: tuple[str, ...] = ()) -> str:
    """A short digest of ``parts`` (bytes as they are, anything else by its repr) and of the
    package code an artefact is made by: ``code`` names files or folders (their ``*.py``)
    under ``tinygpt/``, e.g. ``("tokenizer", "pretraining/data.py")``."""
    files = sorted(f for name in code for f in ([PACKAGE / name] if name.endswith(".py")
                                                else (PACKAGE / name).glob("*.py")))
    h = hashlib.sha256()
    for part in [*parts, *(f.read_bytes() for f in files)]:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
    return h.hexdigest()[:16]


def pick_device(choice: str = "cpu") -> str:
    """Return the torch device name for ``choice`` ("cpu", "cuda" or "auto").

    "auto" means CUDA when available, else the CPU. Asking for CUDA on a machine
    without it is an error, not a silent fall back.
    """
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if choice not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {choice!r}")
    return choice


def has_c_compiler() -> bool:
    """Whether a C compiler (cc, gcc or clang) is on PATH: torch.compile needs one on the CPU."""
    return any(shutil.which(cc) for cc in ("cc", "gcc", "clang"))


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The CPU's vendor ("AuthenticAMD", "GenuineIntel", ...), model name, and family and
    model numbers (which tell CPU generations apart when the name does not, as a cloud's
    "AMD EPYC" does not); "" where unknown."""
    fields = {"vendor_id": "", "model name": "", "cpu family": "", "model": ""}
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in fields and not fields[key.strip()]:
                fields[key.strip()] = value.strip()
    processor = platform.processor()
    vendor = fields["vendor_id"] or next((v for v in ("AuthenticAMD", "GenuineIntel")
                                          if v in processor), "")
    return {"vendor": vendor, "model": fields["model name"] or processor,
            "family_number": fields["cpu family"], "model_number": fields["model"]}


def machine_info(packages: list[str]) -> dict[str, Any]:
    """Where a measurement came from: Python, platform, the CPU and its cores, package versions."""
    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    cpu = cpu_info()
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "machine": platform.machine(),
            "cpu_model": cpu["model"], "cpu_family_number": cpu["family_number"],
            "cpu_model_number": cpu["model_number"], "cpu_count": os.cpu_count(),
            "packages": {p: installed(p) for p in packages}}
