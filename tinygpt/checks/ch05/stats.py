"""Chapter 5's checks for notebook 2: bootstrap intervals, Bradley-Terry, Elo,
contamination.

Oracles written here: the bootstrap read off the prescribed resamples with the
percentile's linear interpolation spelt out; Bradley-Terry judged by its optimality
condition (the penalised log-likelihood's gradient, summed game by game, vanishes only at
the unique maximiser, since the objective is strictly concave); Elo played game by game;
contamination by sliding every item n-gram along every corpus text. Part of
``tinygpt.checks.ch05``.
"""
from __future__ import annotations

import math
import random
import re

import torch

from tinygpt.checks.common import mismatch, raises_value_error


def _indices(n: int, resamples: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n, (resamples, n), generator=g).tolist()


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between the two order statistics around q * (n - 1)."""
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (position - low) * (sorted_values[high] - sorted_values[low])


KINDS = ("binary", "few", "logprob")


def _scores(rng: random.Random, n: int, kind: str | None = None) -> list[float]:
    """Per-item scores of one kind (0/1, 0-2, log-probabilities), rounded to float32 so
    that a float32 tensor of them is exact."""
    kind = kind or rng.choice(KINDS)
    return torch.tensor(_raw_scores(rng, n, kind), dtype=torch.float32).tolist()


def _raw_scores(rng: random.Random, n: int, kind: str) -> list[float]:
    if kind == "binary":
        p = rng.random()
        return [float(rng.random() < p) for _ in range(n)]
    if kind == "few":
        return [float(rng.randrange(3)) for _ in range(n)]
    return [-rng.expovariate(0.5) for _ in range(n)]


def _close(what, given, want: float, got) -> None:
    if not isinstance(got, float) or not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
        raise mismatch(what, given, want, got)


def check_bootstrap_ci(bootstrap_ci, seed: int) -> None:
    """(mean, low, high) as floats, read off the prescribed resamples' means at the
    level's two tail quantiles (linear interpolation), for lists and float32 tensors,
    levels 0.5-0.99 and 1-2,000 resamples; no values, a level outside (0, 1) or no
    resamples is a ValueError."""
    rng = random.Random(seed)
    for kind in KINDS:
        n = rng.randrange(1, 60)
        values = _scores(rng, n, kind)
        level, resamples, s = rng.choice([0.5, 0.9, 0.95, 0.99]), rng.choice([1, 7, 500, 2000]), \
            rng.randrange(10_000)
        means = sorted(sum(values[i] for i in row) / n for row in _indices(n, resamples, s))
        want = (sum(values) / n, _percentile(means, (1 - level) / 2), _percentile(means, (1 + level) / 2))
        given = values if rng.random() < 0.5 else torch.tensor(values)
        got = bootstrap_ci(given, level=level, resamples=resamples, seed=s)
        if not isinstance(got, tuple) or len(got) != 3:
            raise mismatch("bootstrap_ci must return (mean, low, high)", values, want, got)
        for name, w, g in zip(("mean", "low", "high"), want, got):
            _close(f"bootstrap_ci's {name} (level {level}, {resamples} resamples, seed {s})",
                   values, w, g)
    raises_value_error("bootstrap_ci of no values", lambda: bootstrap_ci([]))
    raises_value_error("bootstrap_ci at level 1", lambda: bootstrap_ci([1.0, 0.0], level=1.0))
    raises_value_error("bootstrap_ci at level 0", lambda: bootstrap_ci([1.0, 0.0], level=0.0))
    raises_value_error("bootstrap_ci with 0 resamples", lambda: bootstrap_ci([1.0], resamples=0))


def check_paired_bootstrap(paired_bootstrap, seed: int) -> None:
    """The difference of means, the percentile interval of the differences with the same
    resampled items on both sides, and the doubled share on the far side of zero (capped
    at 1), for positive, negative and zero differences; unequal lengths, no items or a
    bad level is a ValueError."""
    rng = random.Random(seed)
    for sign in (1, -1, 0):
        n = rng.randrange(2, 50)
        a = _scores(rng, n)
        b = [x - sign * rng.random() * rng.random() for x in a] if sign else list(a)
        if sign and rng.random() < 0.5:
            b = [x if rng.random() < 0.7 else rng.choice(b) for x in b]
        b = torch.tensor(b, dtype=torch.float32).tolist()
        level, resamples, s = rng.choice([0.8, 0.95]), rng.choice([200, 1000]), rng.randrange(10_000)
        diffs = sorted(sum(a[i] - b[i] for i in row) / n for row in _indices(n, resamples, s))
        difference = sum(a) / n - sum(b) / n
        far = sum(d <= 0 for d in diffs) if difference > 0 else sum(d >= 0 for d in diffs)
        want = {"difference": difference, "low": _percentile(diffs, (1 - level) / 2),
                "high": _percentile(diffs, (1 + level) / 2),
                "p_value": min(1.0, 2 * far / resamples)}
        got = paired_bootstrap(a, torch.tensor(b), level=level, resamples=resamples, seed=s)
        if not isinstance(got, dict) or set(got) != set(want):
            raise mismatch("paired_bootstrap's keys", (a, b), sorted(want),
                           sorted(got) if isinstance(got, dict) else got)
        for key, value in want.items():
            g = got[key]
            if not isinstance(g, float) or not math.isclose(g, value, rel_tol=1e-9, abs_tol=1e-9):
                raise mismatch(f"paired_bootstrap's {key!r} (difference {difference:+.3g})",
                               (a, b), value, g)
    raises_value_error("paired_bootstrap of unequal lengths",
                       lambda: paired_bootstrap([1.0, 0.0], [1.0]))
    raises_value_error("paired_bootstrap of no items", lambda: paired_bootstrap([], []))
    raises_value_error("paired_bootstrap at level 1.5",
                       lambda: paired_bootstrap([1.0], [0.0], level=1.5))


def _random_games(rng: random.Random, n_players: int, n_games: int) -> list[tuple]:
    strength = [rng.gauss(0, 1.5) for _ in range(n_players)]
    games = []
    for _ in range(n_games):
        i, j = rng.sample(range(n_players), 2)
        p = 1 / (1 + math.exp(strength[j] - strength[i]))
        u = rng.random()
        games.append((i, j, 0.5 if u < 0.15 else float(rng.random() < p)))
    return games


def _validation(fit, what: str) -> None:
    raises_value_error(f"{what} with a player out of range", lambda: fit([(0, 3, 1.0)], 3))
    raises_value_error(f"{what} with a negative player", lambda: fit([(-1, 0, 1.0)], 3))
    raises_value_error(f"{what} with a player against itself", lambda: fit([(1, 1, 1.0)], 3))
    raises_value_error(f"{what} with a result of 2", lambda: fit([(0, 1, 2.0)], 3))
    raises_value_error(f"{what} with no players", lambda: fit([], 0))


def check_bradley_terry(bradley_terry, seed: int) -> None:
    """float64 strengths of the right shape at which the ridge-penalised log-likelihood's
    gradient vanishes (ties as half a win), with a player who never lost kept finite and
    a player who never played at zero; bad players, results or ridge are a ValueError."""
    rng = random.Random(seed)
    n = rng.randrange(3, 8)
    games = _random_games(rng, n, rng.randrange(20, 120))
    games += [(0, rng.randrange(1, n), 1.0) for _ in range(3)]      # player 0 keeps winning
    games = [g for g in games if not (g[0] == 0 and g[2] != 1.0 or g[1] == 0 and g[2] != 0.0)]
    idle = n                                                           # one more, who never plays
    ridge = rng.choice([0.01, 0.1, 1.0])
    got = bradley_terry(games, n + 1, ridge=ridge)
    if not isinstance(got, torch.Tensor) or got.shape != (n + 1,) or got.dtype != torch.float64:
        raise mismatch("bradley_terry must return float64 strengths, one per player", games,
                       f"shape {(n + 1,)} float64", getattr(got, "shape", got))
    theta = got.tolist()
    if not all(math.isfinite(t) for t in theta):
        raise mismatch("bradley_terry's strengths must be finite (the ridge keeps them so)",
                       games, "finite", theta)
    gradient = [-ridge * t for t in theta]
    for i, j, result in games:
        residual = result - 1 / (1 + math.exp(theta[j] - theta[i]))
        gradient[i] += residual
        gradient[j] -= residual
    worst = max(abs(g) for g in gradient)
    if worst > 1e-6:
        raise AssertionError(f"bradley_terry: not the maximum likelihood: the penalised "
                             f"log-likelihood's gradient is still {worst:.3g} (ridge {ridge}, "
                             f"{len(games)} games)")
    if abs(theta[idle]) > 1e-9:
        raise mismatch("bradley_terry: a player with no games keeps strength 0", games, 0.0,
                       theta[idle])
    raises_value_error("bradley_terry with ridge 0", lambda: bradley_terry(games, n + 1, ridge=0))
    _validation(bradley_terry, "bradley_terry")


def check_elo(elo, seed: int) -> None:
    """Ratings after the games in order (wins, losses, ties), for random k and starting
    ratings, float64; the order of the games matters; bad players, results or k are a
    ValueError."""
    rng = random.Random(seed)
    n = rng.randrange(2, 7)
    games = _random_games(rng, n, rng.randrange(5, 60))
    k, initial = rng.choice([8.0, 16.0, 32.0]), rng.choice([1000.0, 1500.0])
    ratings = [initial] * n
    for i, j, result in games:
        expected = 1 / (1 + 10 ** ((ratings[j] - ratings[i]) / 400))
        ratings[i] += k * (result - expected)
        ratings[j] -= k * (result - expected)
    got = elo(games, n, k=k, initial=initial)
    if not isinstance(got, torch.Tensor) or got.dtype != torch.float64 or got.shape != (n,):
        raise mismatch("elo must return float64 ratings, one per player", games,
                       f"shape {(n,)} float64", got)
    if not torch.allclose(got, torch.tensor(ratings, dtype=torch.float64), atol=1e-9, rtol=0):
        raise mismatch(f"elo (k={k}, initial={initial})", games, ratings, got.tolist())
    raises_value_error("elo with k = 0", lambda: elo(games, n, k=0.0))
    _validation(elo, "elo")


_VOCAB = ["the", "mill", "river", "Ash", "runs", "past", "old", "Brindle", "has", "36,201",
          "people", "Wren", "Quill", "lives", "in", "a", "town"]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_VOCAB) + rng.choice(["", "", ",", "."]) for _ in range(words))


def _share(item: str, corpus: list[str], n: int) -> float:
    words = re.findall(r"\w+", item.lower())
    m = min(n, len(words))
    grams = {tuple(words[i:i + m]) for i in range(len(words) - m + 1)}
    texts = [re.findall(r"\w+", t.lower()) for t in corpus]
    found = sum(any(t[s:s + m] == list(g) for t in texts for s in range(len(t) - m + 1))
                for g in grams)
    return found / len(grams)


def check_contamination(ngrams, contamination, seed: int) -> None:
    """n-grams of lower-cased \\w+ words (as a set, empty for short texts); per item the
    share of its distinct n-grams found inside one corpus text, with spans copied from
    the corpus planted in items, items shorter than n taken whole, n-grams across two
    texts not counted; n < 1 or an item with no words is a ValueError."""
    rng = random.Random(seed)
    n = rng.randrange(2, 7)
    corpus = [_text(rng, rng.randrange(3, 40)) for _ in range(rng.randrange(2, 5))]
    for text in corpus[:2]:
        words = re.findall(r"\w+", text.lower())
        want = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
        if ngrams(text, n) != want:
            raise mismatch(f"ngrams(text, {n})", text, want, ngrams(text, n))
    items = []
    for _ in range(6):
        source = rng.choice(corpus).split()
        start = rng.randrange(len(source))
        planted = " ".join(source[start:start + rng.randrange(1, 12)])
        kind = rng.choice(["planted", "mixed", "fresh", "short"])
        if kind == "planted":
            items.append(planted.upper())
        elif kind == "mixed":
            items.append(planted + " " + _text(rng, rng.randrange(1, 8)))
        elif kind == "short":
            items.append(_text(rng, rng.randrange(1, n)))
        else:
            items.append(_text(rng, rng.randrange(n, 15)))
    items.append(corpus[0].split()[-1] + " " + corpus[1].split()[0])  # across two texts
    want = [_share(item, corpus, n) for item in items]
    got = contamination(items, corpus, n=n)
    if not isinstance(got, list) or len(got) != len(items) or any(
            not math.isclose(g, w, abs_tol=1e-12) for g, w in zip(got, want)):
        raise mismatch(f"contamination(items, corpus, n={n})", (items, corpus), want, got)
    raises_value_error("contamination with n = 0", lambda: contamination(["a b"], corpus, n=0))
    raises_value_error("contamination of an item with no words",
                       lambda: contamination(["a b", " ,. "], corpus, n=2))
