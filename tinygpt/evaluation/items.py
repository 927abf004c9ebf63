"""Evaluation items with known answers, rendered from the world's facts.

Hand-written for chapter 5. A multiple-choice item is a fact's sentence cut before its
object ("Wren Quill lives in"), the true object and three others of the same relation
as options (" Brindle", " Lintmoor", ...), in an order fixed by a seed; held-in items
come from facts the training text contains, held-out items from the facts that no
training text ever contains (``tinygpt.world``), so the gap between the two is what the
model memorised rather than understood.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from tinygpt.world import Fact, World, build_world

SPLITS = ("held_in", "held_out")


@dataclass(frozen=True)
class ChoiceItem:
    """A prompt, its options (each with its leading space), the index of the right one."""

    prompt: str
    choices: tuple[str, ...]
    answer: int
    fact: Fact


def choice_items(split: str, world: World | None = None, n_choices: int = 4,
                 seed: int = 0) -> list[ChoiceItem]:
    """One item per fact of ``split`` whose relation has enough other objects."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    world = world or build_world()
    rng = random.Random(seed)
    facts = world.held_out_facts() if split == "held_out" else world.training_facts()
    items = []
    for fact in facts:
        others = sorted({f.object for f in world.facts
                         if f.relation == fact.relation and f.object != fact.object})
        if len(others) < n_choices - 1 or fact.object not in fact.sentence:
            continue
        options = [fact.object, *rng.sample(others, n_choices - 1)]
        rng.shuffle(options)
        prompt = fact.sentence[:fact.sentence.index(fact.object)].rstrip()
        items.append(ChoiceItem(prompt, tuple(" " + o for o in options),
                                options.index(fact.object), fact))
    return items
