"""Chapter 4's data, rendered from the invented world: chats, preference pairs, checked tasks.

Hand-written infrastructure (design section 5: one source of facts, ``tinygpt.world``;
nothing here stores a fact). Every item records the facts it was made from, and
``split="train"`` never uses a held-out fact, so evaluation on ``split="held_out"``
measures what the model learned, not what it was shown:

* ``sft_chats``: a system prompt, a question about one fact, the answer as a sentence;
* ``preference_pairs``: the same prompt with a correct, helpful answer (chosen) and a
  wrong, evasive or rude one (rejected), for the reward model and DPO;
* ``verifiable_tasks``: questions a program can mark (a fact's value; a sum or
  difference of two towns' numbers; which of two towns is larger or older), with
  ``is_correct`` to mark a completion, for GRPO.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from tinygpt.world import Fact, World, build_world

SYSTEM_PROMPT = "You answer questions about the island of Marrow in one sentence."
SPLITS = ("train", "held_out")
EVASIVE = ["I would rather not say.", "That is hard to know.", "You should ask someone else."]
RUDE = ["Look it up yourself.", "What a dull question.", "Why would I tell you that?"]


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with a preferred and a dispreferred answer; ``kind`` says how the
    rejected one is bad ("wrong", "evasive" or "rude")."""

    prompt: list[dict]
    chosen: str
    rejected: str
    kind: str
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class Task:
    """A question whose answer a program checks: ``answer`` is the value, as the world writes
    it, or for a comparison the name of the town that wins, among ``choices``."""

    prompt: list[dict]
    answer: str
    kind: str
    facts: tuple[Fact, ...]
    choices: tuple[str, ...] = ()  # a choice's answer must name it and no other choice


def _facts(world: World, split: str) -> list[Fact]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return world.training_facts() if split == "train" else world.held_out_facts()


def _question(fact: Fact) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": fact.question}]


def sft_chats(split: str = "train", world: World | None = None) -> list[tuple[list[dict], Fact]]:
    """(conversation, fact) for every fact of ``split``: the question, answered by the fact's sentence."""
    return [(_question(f) + [{"role": "assistant", "content": f.sentence}], f)
            for f in _facts(world or build_world(), split)]


def _with_object(fact: Fact, other: str) -> str:
    """The fact's sentence with its value replaced by ``other`` (the last occurrence)."""
    head, sep, tail = fact.sentence.rpartition(fact.object)
    if not sep:
        raise ValueError(f"the sentence of {fact.subject}'s {fact.relation} does not contain its value")
    return head + other + tail


def preference_pairs(split: str = "train", world: World | None = None,
                     seed: int = 0) -> list[PreferencePair]:
    """One pair per fact of ``split``; the rejected answers cycle through wrong, evasive, rude.

    A wrong answer takes another value of the same relation (a river that is not this
    town's), so it reads as fluently as the right one: in training pairs, a value of
    another training fact, so that no held-out value shows; in held-out pairs, any
    other value of the world."""
    world = world or build_world()
    rng = random.Random(seed)
    values: dict[str, list[str]] = {}
    for f in _facts(world, split) if split == "train" else world.facts:
        values.setdefault(f.relation, [])
        if f.object not in values[f.relation]:
            values[f.relation].append(f.object)
    pairs = []
    for i, fact in enumerate(_facts(world, split)):
        kind = ("wrong", "evasive", "rude")[i % 3]
        if kind == "wrong":
            others = [v for v in values[fact.relation] if v != fact.object]
            rejected = _with_object(fact, rng.choice(others))
        else:
            rejected = rng.choice(EVASIVE if kind == "evasive" else RUDE)
        pairs.append(PreferencePair(_question(fact), fact.sentence, rejected, kind, (fact,)))
    return pairs


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def verifiable_tasks(split: str = "train", world: World | None = None, seed: int = 0,
                     pairs: int = 40) -> list[Task]:
    """Every fact of ``split`` as a lookup, and ``pairs`` sums and differences over two towns
    whose facts are both in ``split`` (a held-out task uses at least one held-out fact)."""
    world = world or build_world()
    facts = _facts(world, split)
    tasks = [Task(_question(f), f.object, "lookup", (f,)) for f in facts]
    if split == "train":
        usable = lambda a, b: not (a.held_out or b.held_out)  # noqa: E731
    else:
        usable = lambda a, b: a.held_out or b.held_out  # noqa: E731
    rng = random.Random(seed)
    for relation, kind in (("population", "sum"), ("founded", "difference"),
                           ("population", "larger"), ("founded", "older")):
        towns = [f for f in world.facts if f.relation == relation]
        candidates = [(a, b) for a in towns for b in towns if a.subject < b.subject and usable(a, b)]
        for a, b in rng.sample(candidates, min(pairs // 2, len(candidates))):
            x, y = _number(a.object), _number(b.object)
            choices: tuple[str, ...] = ()
            if kind == "sum":
                question = f"How many people live in {a.subject} and {b.subject} together?"
                answer = f"{x + y:,}"
            elif kind == "difference":
                question = f"How many years passed between the founding of {a.subject} and {b.subject}?"
                answer = str(abs(x - y))
            else:
                if kind == "larger":
                    question = f"Which has more people, {a.subject} or {b.subject}?"
                    answer = a.subject if x > y else b.subject
                else:
                    question = f"Which was founded first, {a.subject} or {b.subject}?"
                    answer = a.subject if x < y else b.subject
                choices = (a.subject, b.subject)
                if rng.random() < 0.5:
                    question = question.replace(f"{a.subject} or {b.subject}", f"{b.subject} or {a.subject}")
            prompt = [{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": question}]
            tasks.append(Task(prompt, answer, kind, (a, b), choices))
    return tasks


def _names(word: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def is_correct(task: Task, completion: str) -> bool:
    """Whether ``completion`` states the task's answer: for a number, the first number it
    states equals it (commas or not); for a word, it names the word, case aside; for a
    choice, it names the answer and no other choice. (A completion that lists many
    numbers, or names both towns, is not rewarded: RL would learn to do just that.)"""
    if re.fullmatch(r"[\d,]+", task.answer):
        found = re.findall(r"\d[\d,]*", completion)
        return bool(found) and _number(found[0].rstrip(",")) == _number(task.answer)
    others = [c for c in task.choices if c != task.answer]
    return _names(task.answer, completion) and not any(_names(c, completion) for c in others)
