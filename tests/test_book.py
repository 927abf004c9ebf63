"""The book builds strictly (-W -n), executes every page, and needs no network to read."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from conftest import ROOT
from tinygpt import records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n",
         "--keep-going", "--path-output", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return out / "_build" / "html"


def test_every_chapter_of_the_toc_has_a_page(html):
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"file: book/(\S+)", toc)
    assert len(files) == 16
    for name in files:
        assert (html / "book" / f"{name}.html").exists(), name


def test_chapter_2_shows_its_outputs_plot_and_math(html):
    page = (html / "book" / "ch02_tokenizer.html").read_text()
    assert "[791, 6201, 555, 279, 15140, 1047, 912, 3300]" in page
    assert re.search(r'<img [^>]*src="[^"]*\.png"', page), "the bytes-per-token plot is missing"
    assert "math notranslate" in page and "\\operatorname" in page
    assert "x rustbpe" in page


def test_pages_load_nothing_from_the_network(html):
    for page in html.rglob("*.html"):
        text = page.read_text()
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', text)
        assert not remote, f"{page.name} loads {remote[:3]}"
    page = (html / "book" / "ch02_tokenizer.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in page
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def test_chapter_1_shows_its_funnel_report_card_and_s_curve(html):
    page = (html / "book" / "ch01_data.html").read_text()
    assert "near dedup" in page and "recall" in page and "decoys left alone" in page
    assert len(re.findall(r'<img [^>]*src="[^"]*\.png"', page)) >= 2, "funnel or S-curve missing"


def test_chapter_3_shows_training_attention_scaling_and_benchmark(html):
    page = (html / "book" / "ch03_pretraining.html").read_text()
    assert "validation loss" in page and "unigram baseline" in page
    assert "the head whose later tokens look most at" in page
    assert "fit: E = " in page
    assert re.search(r"same library: \d\.\d\dx on BLAS, \d\.\d\dx on oneDNN", page), \
        "the benchmark table is missing"
    assert re.search(r"float32 matmul on one core.*blas \d+ GFLOP/s", page), \
        "the libraries' rates are missing"
    assert len(re.findall(r'<img [^>]*src="[^"]*\.png"', page)) >= 4, "plots are missing"


def test_every_figure_in_the_prose_is_its_record_value(html):
    quoting = 0
    for page in sorted((ROOT / "book").glob("*.md")):
        wanted = [format(records.figures(key.split(".")[0])[key], spec)
                  for key, spec in records.quoted(page.read_text(encoding="utf-8"))]
        shown = re.findall(r'<span class="pasted-text">([^<]*)</span>',
                           (html / "book" / f"{page.stem}.html").read_text())
        assert [unescape(s) for s in shown] == wanted, page.name
        quoting += bool(wanted)
    assert quoting >= 3, "chapters 1-3 quote their benchmark records"


def test_chapter_4_shows_every_stage_and_the_measured_table(html):
    page = (html / "book" / "ch04_posttraining.html").read_text()
    assert "&lt;|assistant|&gt;" in page and "training chats" in page
    assert re.search(r"rows of 128: \d+ chats in \d+ rows", page)
    assert "base model:" in page and "fine-tuned:" in page and "held-out" in page
    assert len(re.findall(r'<img [^>]*src="[^"]*\.png"', page)) >= 4, "a plot is missing"
    assert re.search(r"chosen +-?\d+\.\d\d +rejected +-?\d+\.\d\d", page), "log-probabilities"
    assert re.search(r"advantage [+-]\d\.\d\d", page), "the GRPO group is missing"
    assert "critiques: [" in page and "revision: " in page, "critique and revision missing"
    assert re.search(r"grpo +\d+\.\d% +\d+\.\d%", page), "the pipeline's table is missing"
