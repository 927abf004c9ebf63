"""The invented world and the course corpus: deterministic, held-out facts stay out."""
import pytest

from tinygpt.corpus import course_corpus
from tinygpt.curation.crawl import shakespeare
from tinygpt.world import RUNNING_EXAMPLE, build_world


def test_world_is_deterministic_and_has_a_held_out_share():
    a, b = build_world(), build_world()
    assert a == b and len(a.facts) > 100
    share = len(a.held_out_facts()) / len(a.facts)
    assert 0.1 < share < 0.3
    assert build_world(7).facts != a.facts


def test_training_facts_and_the_running_example_reach_the_corpus():
    corpus = course_corpus()
    assert sum(f.sentence in corpus for f in build_world().training_facts()) > 100
    assert RUNNING_EXAMPLE in corpus


def test_the_plays_are_real_text():
    plays = shakespeare()
    assert len(plays.encode()) > 5_000_000 and "To be, or not to be" in plays


def test_corpus_is_curated_deterministic_and_prefix_stable():
    corpus = course_corpus()
    assert len(corpus.encode()) > 10_000_000
    small = course_corpus(100_000)
    assert len(small.encode()) <= 100_000 and corpus.startswith(small)
    assert course_corpus(300_000).startswith(small)
    for marker in ("ACT I", "def ", "Marrow News", "wrote:"):
        assert marker in course_corpus(2_000_000), marker
    with pytest.raises(ValueError, match="holds"):
        course_corpus(len(corpus.encode()) + 1)


def test_corpus_holds_no_held_out_fact_no_pii_and_no_foreign_pages():
    corpus = course_corpus()
    held = build_world().held_out_facts()
    assert not [f.sentence for f in held if f.sentence in corpus]
    assert "<EMAIL>" in corpus and "@marrow.example" not in corpus
    assert " habitants" not in corpus and " Einwohner" not in corpus
