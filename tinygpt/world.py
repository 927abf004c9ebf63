"""The invented world of the course: one deterministic source of facts (design section 5).

The capstone's model learns about a small island, Marrow, its towns and its people.
Every chapter that needs world knowledge draws it from here and keeps no copy: the
crawl's world pages (ch01), the corpus text the tokenizer trains on (ch02), instruction
and preference data (ch04), evaluation sets with known answers (ch05) and tool tasks
(ch13). The facts are data generated from a seed; a fixed share of them is *held out*
(never written into training text) so that evaluation measures learning, not leakage.

What it leaves out: anything the later chapters have not asked for yet (dialogue,
arithmetic tasks); they add renderers here, not copies of the facts.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

WORLD_SEED = 2026
RUNNING_EXAMPLE = "The bank by the river had no money"

TOWNS = ["Eskerby", "Halloway", "Brindle", "Quarrow", "Lintmoor", "Ottersham",
         "Fennick", "Sallowgate", "Carrow Ness", "Dunmere", "Pellingford", "Yarrowby"]
RIVERS = ["Sable", "Wend", "Orrin", "Fleet", "Mallow", "Tarn"]
TRADES = ["salt", "wool", "glass", "rope", "cider", "slate", "herring", "paper"]
FIRST = ["Mira", "Tobin", "Ansel", "Wren", "Odile", "Casper", "Ines", "Jory", "Lark",
         "Perrin", "Sabine", "Teodor", "Ysolde", "Bram", "Nell", "Oswin", "Hester", "Rafe"]
LAST = ["Tolven", "Ashgrove", "Mereweather", "Quill", "Hartsell", "Penrose", "Dunstan",
        "Vell", "Corrigan", "Blythe", "Farrow", "Ostrander"]
JOBS = ["baker", "ferry pilot", "banker", "glassblower", "teacher", "harbour master",
        "clockmaker", "fisher", "librarian", "rope maker", "doctor", "miller"]

HELD_OUT_SHARE = 0.2  # share of facts kept out of every training text


@dataclass(frozen=True)
class Fact:
    """One fact as a (subject, relation, object) triple, with a question that asks it."""

    subject: str
    relation: str
    object: str
    question: str
    sentence: str

    @property
    def held_out(self) -> bool:
        """True for the fixed share of facts that training text never contains."""
        digest = hashlib.sha256(f"{self.subject}|{self.relation}".encode()).digest()
        return digest[0] / 256 < HELD_OUT_SHARE


@dataclass(frozen=True)
class World:
    """The island's facts, in a fixed order."""

    seed: int
    facts: tuple[Fact, ...]

    def training_facts(self) -> list[Fact]:
        return [f for f in self.facts if not f.held_out]

    def held_out_facts(self) -> list[Fact]:
        return [f for f in self.facts if f.held_out]


def _town_facts(rng: random.Random) -> list[Fact]:
    facts = []
    for town in TOWNS:
        river = rng.choice(RIVERS)
        people = rng.randrange(300, 40_000)
        founded = rng.randrange(1102, 1890)
        trade = rng.choice(TRADES)
        facts += [
            Fact(town, "river", river, f"Which river runs through {town}?",
                 f"{town} stands on the river {river}."),
            Fact(town, "population", f"{people:,}", f"How many people live in {town}?",
                 f"{town} has {people:,} people."),
            Fact(town, "founded", str(founded), f"When was {town} founded?",
                 f"{town} was founded in {founded}."),
            Fact(town, "trade", trade, f"What is {town} known for?",
                 f"{town} is known for its {trade}."),
        ]
    return facts


def _person_facts(rng: random.Random) -> list[Fact]:
    facts = []
    names = rng.sample([f"{a} {b}" for a in FIRST for b in LAST], 40)
    for name in names:
        town, job, age = rng.choice(TOWNS), rng.choice(JOBS), rng.randrange(19, 88)
        facts += [
            Fact(name, "home", town, f"Where does {name} live?", f"{name} lives in {town}."),
            Fact(name, "job", job, f"What does {name} do?", f"{name} works as a {job}."),
            Fact(name, "age", str(age), f"How old is {name}?", f"{name} is {age} years old."),
        ]
    return facts


@lru_cache(maxsize=4)
def build_world(seed: int = WORLD_SEED) -> World:
    """The world for ``seed``: the same facts, in the same order, on every machine."""
    rng = random.Random(seed)
    return World(seed=seed, facts=tuple(_town_facts(rng) + _person_facts(rng)))


_CONNECTIVES = ["", "", "Everyone knows that ", "It is said that ", "As the old maps show, ",
                "Ask anyone on Marrow: ", "In the island records, "]


def world_paragraphs(seed: int = WORLD_SEED) -> Iterator[str]:
    """An endless, deterministic stream of paragraphs stating the world's training facts.

    Held-out facts never appear. Now and then a paragraph ends with the running
    example, since Marrow's ferry town has a bank by a river.
    """
    facts = build_world(seed).training_facts()
    rng = random.Random(seed + 1)
    while True:
        chosen = rng.sample(facts, rng.randrange(3, 7))
        sentences = [rng.choice(_CONNECTIVES) + f.sentence for f in chosen]
        if rng.random() < 0.05:
            sentences.append(RUNNING_EXAMPLE + ".")
        yield " ".join(sentences)


def world_prose(n_bytes: int, seed: int = WORLD_SEED) -> str:
    """The first paragraphs of :func:`world_paragraphs` up to about ``n_bytes`` bytes."""
    out, size = [], 0
    for paragraph in world_paragraphs(seed):
        if size >= n_bytes:
            break
        out.append(paragraph)
        size += len(paragraph.encode("utf-8")) + 2
    return "\n\n".join(out)
