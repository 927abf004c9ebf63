"""The invented world of the course: one deterministic source of facts (design section 5).

The capstone's model learns about a small island, Marrow, its towns and its people.
Every chapter that needs world knowledge draws it from here and keeps no copy: the
crawl's news and wiki pages (ch01, and through them the corpus of ch02 and ch03),
instruction and preference data (ch04), evaluation sets with known answers (ch05) and
tool tasks (ch13). The facts are data generated from a seed; a fixed share of them is *held out*
(never written into training text) so that evaluation measures learning, not leakage.

What it leaves out: anything the later chapters have not asked for yet (dialogue,
arithmetic tasks); they add renderers, not copies of the facts. Pages about the world
are written by ``tinygpt.curation.crawl``.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache

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
