"""The training entry point: it trains, evaluates, checkpoints, resumes, stays quiet unless
asked, and under torchrun two processes train exactly as one does on the combined batch."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from conftest import ROOT
from tinygpt.kernels import cpu_matmul
from tinygpt.pretraining import PRESETS, load_model
from tinygpt.pretraining.prepare import prepare_data, unigram_loss
from tinygpt.pretraining.trainer import train
from tinygpt.train import main

TINY_MODEL, TINY_TRAIN = PRESETS["tiny"]


def test_a_tiny_run_evaluates_checkpoints_and_beats_the_unigram_baseline(tmp_path, capsys):
    config = dataclasses.replace(TINY_TRAIN, max_steps=120, batch_size=8, eval_interval=60)
    run = train(TINY_MODEL, config, out_dir=tmp_path)
    assert capsys.readouterr().err == "", "the trainer must be quiet unless asked"
    h = run.history
    assert len(h["train_loss"]) == 120 and [e["step"] for e in h["evals"]] == [60, 120]
    assert h["evals"][-1]["val"] < h["unigram_val"] < h["evals"][0]["val"] + 1.5
    assert json.loads((tmp_path / "history.json").read_text())["evals"] == h["evals"]
    back = load_model(tmp_path)
    tokens = torch.randint(0, TINY_MODEL.vocab_size, (1, 16))
    assert torch.equal(back(tokens), run.model.eval()(tokens))


def test_resume_continues_from_the_checkpointed_step(tmp_path):
    first = train(TINY_MODEL, TINY_TRAIN, out_dir=tmp_path).history
    again = train(TINY_MODEL, TINY_TRAIN, out_dir=tmp_path, resume_run=True).history
    assert again["evals"] == first["evals"] and len(again["train_loss"]) == TINY_TRAIN.max_steps
    longer = dataclasses.replace(TINY_TRAIN, max_steps=TINY_TRAIN.max_steps + 10)
    more = train(TINY_MODEL, longer, out_dir=tmp_path, resume_run=True).history
    assert more["train_loss"][:TINY_TRAIN.max_steps] == first["train_loss"]
    assert len(more["train_loss"]) == longer.max_steps and more["evals"][-1]["step"] == 30


def test_a_compiled_run_trains_like_the_eager_one(tmp_path):
    config = dataclasses.replace(TINY_TRAIN, max_steps=12, eval_interval=12)
    eager = train(TINY_MODEL, config).history
    counters.clear()
    compiled = train(TINY_MODEL, dataclasses.replace(config, compile=True), out_dir=tmp_path)
    assert counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
    # Fused kernels round differently, so the losses agree closely rather than exactly.
    assert compiled.history["train_loss"] == pytest.approx(eager["train_loss"], abs=1e-3)
    assert compiled.history["train"]["compile"] and not eager["train"]["compile"]
    tokens = torch.randint(0, TINY_MODEL.vocab_size, (1, 16))
    assert torch.equal(load_model(tmp_path)(tokens), compiled.model.eval()(tokens))


@pytest.mark.skipif(not cpu_matmul.onednn_available(), reason="torch without oneDNN")
def test_a_run_on_onednn_matmuls_trains_like_one_on_torchs_blas(tmp_path, monkeypatch):
    config = dataclasses.replace(TINY_TRAIN, max_steps=12, eval_interval=12)
    blas = train(TINY_MODEL, dataclasses.replace(config, cpu_matmul="blas")).history
    calls = []
    matmul = cpu_matmul._matmul_t
    monkeypatch.setattr(cpu_matmul, "_matmul_t", lambda *a: calls.append(1) or matmul(*a))
    onednn = train(TINY_MODEL, dataclasses.replace(config, cpu_matmul="onednn"), out_dir=tmp_path)
    assert calls, "no matmul went to oneDNN"
    assert (onednn.history["cpu_matmul"], blas["cpu_matmul"]) == ("onednn", "blas")
    # Another library sums in another order: the losses agree closely, not bit for bit.
    assert onednn.history["train_loss"] == pytest.approx(blas["train_loss"], abs=1e-3)
    assert all(type(m) is torch.nn.Linear for m in onednn.model.modules()
               if isinstance(m, torch.nn.Linear)), "the layers are put back after the run"
    with pytest.raises(ValueError, match="must be one of"):
        train(TINY_MODEL, dataclasses.replace(config, cpu_matmul="mkl"))


@pytest.mark.parametrize("flags, message", [
    (["--cpu-matmul", "mkl"], "cpu_matmul must be one of auto, onednn, blas, got 'mkl'"),
    (["--n-head", "3"], "n_embd must be a multiple of n_head"),
])
def test_bad_flags_are_usage_errors_before_any_work(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["--preset", "tiny", "--quiet", "--out", str(tmp_path / "run"), *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_compiling_on_a_cpu_without_a_c_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs a C compiler"):
        train(TINY_MODEL, dataclasses.replace(TINY_TRAIN, compile=True))


def test_progress_bar_only_when_asked(capsys):
    train(TINY_MODEL, dataclasses.replace(TINY_TRAIN, max_steps=2), progress=True)
    assert "pre-training" in capsys.readouterr().err


def test_data_is_cached_split_and_the_baseline_is_the_unigram_entropy():
    data = prepare_data(TINY_MODEL.vocab_size, TINY_TRAIN.corpus_bytes)
    assert data.folder == prepare_data(TINY_MODEL.vocab_size, TINY_TRAIN.corpus_bytes).folder
    n_train, n_val = sum(map(len, data.train)), sum(map(len, data.val))
    assert 0.03 < n_val / (n_train + n_val) < 0.07
    assert data.tokenizer.n_vocab == TINY_MODEL.vocab_size
    assert 0 < unigram_loss(data, TINY_MODEL.vocab_size) < torch.log(torch.tensor(320.0)).item()


def _cli(*args: str, runner: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (runner or [sys.executable, "-m"]) + ["tinygpt.train", "--preset", "tiny", "--quiet",
                                                "--device", "cpu", *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_command_line_reports_the_baseline_and_a_sample(tmp_path):
    result = _cli("--max-steps", "4", "--eval-interval", "2", "--n-layer", "1",
                  "--out", str(tmp_path / "run"), "--report", str(tmp_path / "r.json"))
    assert "unigram baseline" in result.stdout and "sample:" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["n_layer"] == 1 and len(report["sample"]) == 2
    assert report["machine"]["cpu_count"] >= 1 and "cpu_model" in report["machine"]


def test_two_processes_under_torchrun_train_as_one_on_the_combined_batch(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    common = ["--max-steps", "3", "--eval-interval", "3"]
    _cli(*common, "--batch-size", "2", "--out", str(tmp_path / "two"),
         runner=[torchrun, "--standalone", "--nproc_per_node=2", "-m"])
    _cli(*common, "--batch-size", "4", "--out", str(tmp_path / "one"))
    two, one = load_model(tmp_path / "two"), load_model(tmp_path / "one")
    assert json.loads((tmp_path / "two" / "history.json").read_text())["world_size"] == 2
    for (name, a), b in zip(two.named_parameters(), one.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.gpu
def test_the_trainer_runs_on_cuda_in_bf16(tmp_path):
    run = train(TINY_MODEL, dataclasses.replace(TINY_TRAIN, max_steps=4, eval_interval=4),
                device="cuda", out_dir=tmp_path)
    assert run.history["device"].startswith("cuda") and run.history["evals"]
