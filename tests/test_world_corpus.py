"""The invented world and the course corpus: deterministic, held-out facts stay out."""
from tinygpt.corpus import WORLD_SHARE, course_corpus, shakespeare
from tinygpt.world import RUNNING_EXAMPLE, build_world, world_prose


def test_world_is_deterministic_and_has_a_held_out_share():
    a, b = build_world(), build_world()
    assert a == b and len(a.facts) > 100
    share = len(a.held_out_facts()) / len(a.facts)
    assert 0.1 < share < 0.3
    assert build_world(7).facts != a.facts


def test_held_out_facts_never_reach_training_text():
    prose = world_prose(400_000)
    held = build_world().held_out_facts()
    assert held and not any(f.sentence in prose for f in held)
    assert sum(f.sentence in prose for f in build_world().training_facts()) > 50
    assert RUNNING_EXAMPLE in prose


def test_corpus_is_real_text_plus_world_prose_in_every_prefix():
    plays = shakespeare()
    assert len(plays.encode()) > 5_000_000 and "To be, or not to be" in plays
    small = course_corpus(100_000)
    assert len(small.encode()) <= 100_000
    assert "Marrow" in small or "lives in" in small
    assert small == course_corpus(100_000)
    assert course_corpus(300_000).startswith(small[:50_000])


def test_corpus_scales_past_the_plays():
    big = course_corpus(8_000_000)
    assert 7_900_000 < len(big.encode()) <= 8_000_000
    world_bytes = len(big.encode()) - len(shakespeare().encode())
    assert world_bytes > WORLD_SHARE * 1_000_000
