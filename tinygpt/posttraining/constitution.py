"""The course's constitution: written principles, each with a rule-based critic and reviser.

Hand-written infrastructure of chapter 4 (design section 5: the facts come from
``tinygpt.world``, never a copy). Constitutional AI (Bai et al. 2022) has the model
itself critique its draft against a principle and rewrite it; a model of a million
parameters cannot, so each principle here carries a critic that is a rule, with the
island's records to hand, as a retrieval-backed critic would have. What is learned from
the revisions is the same: pairs that prefer the revised answer to the draft (see
``tinygpt.posttraining.grpo.revision_pairs``), which DPO trains on. The principles:

* courteous: no rude remark (the reviser strikes it);
* concise: one sentence, as the system prompt asks (the reviser keeps the first);
* helpful: an answer, not an evasion (the reviser answers from the records);
* truthful: the value the records give (the reviser swaps a wrong value for the right
  one, keeping the draft's wording, or answers from the records).
"""
from __future__ import annotations

import re

from tinygpt.posttraining.data import EVASIVE, RUDE
from tinygpt.posttraining.finetune import states
from tinygpt.posttraining.grpo import Principle
from tinygpt.world import Fact, build_world


def _rude(fact: Fact, draft: str) -> str | None:
    found = [r for r in RUDE if r.lower() in draft.lower()]
    return f"The reply is rude to the person asking: {found[0]!r}." if found else None


def _strike(fact: Fact, draft: str, critique: str) -> str:
    kept = draft
    for remark in RUDE:
        kept = re.sub(re.escape(remark), "", kept, flags=re.IGNORECASE)
    kept = " ".join(kept.split())
    return kept if kept else fact.sentence


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip()) if s]


def _long(fact: Fact, draft: str) -> str | None:
    n = len(_sentences(draft))
    return f"The reply runs to {n} sentences; the question asks for one." if n > 1 else None


def _first_sentence(fact: Fact, draft: str, critique: str) -> str:
    return _sentences(draft)[0]


def _evasive(fact: Fact, draft: str) -> str | None:
    found = [e for e in EVASIVE if e.lower() in draft.lower()]
    return (f"The reply evades the question ({found[0]!r}) though the island's records "
            f"answer it." if found else None)


def _from_records(fact: Fact, draft: str, critique: str) -> str:
    return fact.sentence


def _untrue(fact: Fact, draft: str) -> str | None:
    if states(draft, fact):
        return None
    return (f"The reply does not give {fact.subject}'s {fact.relation} as the records do "
            f"({fact.object}).")


def _corrected(fact: Fact, draft: str, critique: str) -> str:
    """The draft with another value of the fact's relation replaced by the right one, if it
    names one; otherwise the records' sentence."""
    others = {f.object for f in build_world().facts if f.relation == fact.relation} - {fact.object}
    for value in sorted(others, key=len, reverse=True):
        pattern = rf"(?<![\w,]){re.escape(value)}(?![\w,])"
        if re.search(pattern, draft):
            return re.sub(pattern, fact.object, draft, count=1)
    return fact.sentence


PRINCIPLES: list[Principle] = [
    Principle("courteous", "Please choose the response that is courteous to the person "
              "asking, with no rude or dismissive remark.", _rude, _strike),
    Principle("concise", "Please choose the response that answers in one sentence, as the "
              "system prompt asks.", _long, _first_sentence),
    Principle("helpful", "Please choose the response that answers the question when the "
              "island's records hold the answer, rather than evading it.", _evasive,
              _from_records),
    Principle("truthful", "Please choose the response that states what the island's records "
              "say, and no other value.", _untrue, _corrected),
]
