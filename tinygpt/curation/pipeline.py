"""The curation pipeline: chapter 1's pieces wired into the corpus every later chapter uses.

Infrastructure written directly (the pieces it calls are the graded, exported ones):
normalise every page, then filter with ``run_pipeline``: known spam hosts, language (keep
English and code),
blocklist, quality (the Gopher rules for prose, a light syntax rule for code), exact
duplicates, near duplicates (MinHash + LSH); then mask personal data and mix domains by
weight. Each filter reports how many pages it removed and why: the filter funnel.
The order follows FineWeb's (Penedo et al. 2024): cheap filters before expensive ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlparse

from tqdm.auto import tqdm

from tinygpt.curation.clean import LangId, identify, mask_pii, normalize, train_langid
from tinygpt.curation.crawl import Crawl, labelled_samples
from tinygpt.curation.lexicon import BLOCKLIST
from tinygpt.curation.neardup import minhash, mix_domains, near_duplicates, run_pipeline, shingles
from tinygpt.curation.quality import exact_dedup, gopher_rules

KEEP_LANGUAGES = ("en", "code")
BANDS, ROWS, NUM_PERM, THRESHOLD = 16, 8, 128, 0.8  # 1 - (1 - 0.8**8)**16 = 0.96
# Domain weights of the course corpus, by document count. Near what the filtered crawl
# holds, with the plays and code a little upsampled (about 1.2 epochs: they are the real
# text) and surviving mirror pages ("web") nearly dropped.
MIX = {"prose": 0.15, "code": 0.20, "forum": 0.18, "world": 0.46, "web": 0.01}
_DOMAINS = {"plays.example": "prose", "code.example": "code", "forum.marrow.example": "forum",
            "wiki.marrow.example": "world", "news.marrow.example": "world"}
# Hosts known to serve spam (real pipelines keep such lists; FineWeb starts with one).
_SPAM_HOSTS = re.compile(r"^(deals|promo|win)\d*\.example$")
_CODE_LINE = re.compile(r"[=(){}\[\]:]|^\s*(def|class|import|from|return|if|for|#)\b")
_BLOCKED = re.compile(r"\b(" + "|".join(BLOCKLIST) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class Doc:
    """A page on its way through the pipeline."""

    id: int
    url: str
    text: str
    lang: str = ""

    @property
    def domain(self) -> str:
        """The source domain, from the URL's host (unknown hosts are 'web')."""
        return _DOMAINS.get(urlparse(self.url).hostname or "", "web")


@dataclass
class Curated:
    docs: list[Doc]  # after filtering and masking, before mixing
    report: list[dict]  # one row per filter step (see run_pipeline)
    pii: dict[int, list[tuple[str, str]]]  # what mask_pii found, by page id
    mixed: list[Doc]  # the final corpus documents, in order

    def text(self) -> str:
        return "\n\n".join(d.text for d in self.mixed)


@lru_cache(maxsize=1)
def default_langid() -> LangId:
    return train_langid(labelled_samples())


def code_rules(text: str) -> str | None:
    """A light rule for code pages: at least 10 lines, a third of them looking like code."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if len(lines) < 10:
        return "code_too_short"
    if sum(bool(_CODE_LINE.search(ln)) for ln in lines) < len(lines) / 3:
        return "code_not_code"
    return None


def _url(docs):
    return ["spam_host" if _SPAM_HOSTS.match(urlparse(d.url).hostname or "") else None
            for d in docs]


def _language(docs):
    return [None if d.lang in KEEP_LANGUAGES else f"lang:{d.lang}" for d in docs]


def _blocklist(docs):
    return ["blocklist" if _BLOCKED.search(d.text) else None for d in docs]


def _quality(docs):
    verdicts = []
    for d in docs:
        if d.lang == "code":
            verdicts.append(code_rules(d.text))
        else:
            failed = gopher_rules(d.text)
            verdicts.append(f"gopher:{failed[0]}" if failed else None)
    return verdicts


def _exact(docs):
    keep = set(exact_dedup([d.text for d in docs]))
    return [None if i in keep else "exact_duplicate" for i in range(len(docs))]


def near_duplicate_verdicts(docs, device: str = "cpu"):
    """Keep one page per cluster of near duplicates (MinHash 128 x LSH 16 bands of 8)."""
    sig = minhash([shingles(d.text) for d in docs], NUM_PERM, seed=0, device=device)
    keep = set(near_duplicates(sig.cpu(), BANDS, ROWS, THRESHOLD))
    return [None if i in keep else "near_duplicate" for i in range(len(docs))]


STEPS = [("url filter", _url), ("language", _language), ("blocklist", _blocklist), ("quality", _quality),
         ("exact dedup", _exact), ("near dedup", near_duplicate_verdicts)]


def curate(crawl: Crawl, mix: dict[str, float] | None = MIX, progress: bool = False) -> Curated:
    """Run the whole pipeline on ``crawl``; ``mix=None`` keeps the filtered docs unmixed."""
    model = default_langid()
    docs = []
    for page in tqdm(crawl.pages, desc="normalise + language", disable=not progress):
        text = normalize(page.text)
        docs.append(Doc(page.id, page.url, text, identify(model, text)))
    kept, report = run_pipeline(docs, STEPS)
    masked, pii = [], {}
    for d in tqdm(kept, desc="mask personal data", disable=not progress):
        text, found = mask_pii(d.text)
        if found:
            pii[d.id] = found
        masked.append(replace(d, text=text))
    if mix is None:
        return Curated(masked, report, pii, masked)
    weights = {k: v for k, v in mix.items() if any(d.domain == k for d in masked)}
    order = mix_domains([d.domain for d in masked], weights, total=len(masked), seed=0)
    return Curated(masked, report, pii, [masked[i] for i in order])
