"""``python -m tinygpt.evaluate``: the report card of chapter 5 from checkpoint folders
(chapter 3's book run and its int8 copy), its files, and its errors on bad input."""
from __future__ import annotations

import json

import pytest

from tinygpt import evaluate, quantize
from tinygpt.evaluation.report import METRICS, ReportConfig, report_card
from tinygpt.pretraining import PRESETS
from tinygpt.pretraining.trainer import cached_run, cached_run_folder

QUICK = ["--pieces", "3", "--max-items", "5", "--samples", "3", "--k", "2",
         "--resamples", "200", "--quiet"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    book = cached_run_folder(*PRESETS["book"])  # chapter 3's book run (cached)
    int8 = tmp_path_factory.mktemp("int8") / "book-int8"
    quantize.main(["save", str(book), str(int8), "--bits", "8"])
    return book, int8


def test_report_card_of_two_checkpoints(folders, tmp_path, capsys):
    book, int8 = folders
    card = evaluate.main([str(book), str(int8), "--out", str(tmp_path / "out"),
                          "--report", str(tmp_path / "record.json"), *QUICK])
    printed = capsys.readouterr().out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.md", "report.json", "report.png"}
    assert json.loads((tmp_path / "record.json").read_text())["metrics"] == card["metrics"]
    names = [book.name, int8.name]
    assert card["checkpoints"] == names and "| perplexity, held-out text | 3 |" in printed
    for name in names:
        for key, _, _ in METRICS + [("perplexity", "", False)]:
            m = card["metrics"][name][key]
            assert m["low"] <= m["mean"] <= m["high"], (name, key, m)
        assert card["metrics"][name]["qa_held_in"]["n"] == 5
    (comparison,) = card["comparisons"]
    assert comparison["a"] == book.name and set(comparison) >= {key for key, _, _ in METRICS}
    assert card["ratings"]["games"] == 4 * 5  # four binary sets of five items, one pair
    assert card["contamination"]["held_out"]["contaminated"] == 0
    assert card["contamination"]["held_in"]["items"] == 146


def test_an_empty_evaluation_set_is_an_error_not_a_nan():
    run = cached_run(*PRESETS["book"])
    with pytest.raises(ValueError, match="empty"):
        report_card(["book"], [run.model], [run.data.tokenizer], [], "corpus text",
                    ReportConfig(max_items=1, samples=2, k=1, resamples=10), progress=False)


@pytest.mark.parametrize("argv,message", [
    (["/nonexistent/ckpt"], "not a model folder"),
    (["BOOK", "--k", "4", "--samples", "3"], "k <= samples"),
    (["BOOK", "--pieces", "0"], "at least 1"),
    (["BOOK", "--level", "1.5"], "level"),
    (["BOOK", "BOOK"], "named twice"),
])
def test_bad_input_is_a_usage_error_and_writes_nothing(folders, tmp_path, capsys, argv, message):
    argv = [str(folders[0]) if a == "BOOK" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        evaluate.main([*argv, "--out", str(tmp_path / "out"), "--quiet"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
