"""Every chapter 5 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import math

import torch

from tinygpt.checks import ch05 as checks
from tinygpt.evaluation import metrics as m
from tinygpt.evaluation import stats as st
from conftest import mutant_tests


def _nll_without_overlap(model, ids):  # each window starts afresh: a token per window is lost
    block = model.config.block_size
    parts = [m.token_nll(model, ids[s:s + block]) for s in range(0, len(ids), block)
             if len(ids[s:s + block]) > 1]
    if len(ids) < 2:
        raise ValueError("short")
    return torch.cat(parts)


def _nll_in_bits(model, ids):
    return m.token_nll(model, ids) / math.log(2)


def _nll_with_padding(model, ids):  # the last window's padding is scored too
    got = m.token_nll(model, ids)
    block = model.config.block_size
    extra = (-len(got)) % block
    return torch.cat([got, torch.zeros(extra)]) if extra and len(ids) > block else got


def _metrics_without_eot(model, tokenizer, texts):  # the first token of each text is never scored
    if not texts or any(not t for t in texts):
        raise ValueError("empty")
    nll = tokens = n_bytes = 0
    for text in texts:
        ids = tokenizer.encode_ordinary(text)
        scored = m.token_nll(model, ids) if len(ids) > 1 else torch.zeros(0)
        nll, tokens, n_bytes = nll + scored.double().sum().item(), tokens + scored.numel(), \
            n_bytes + len(text.encode())
    return {"tokens": tokens, "bytes": n_bytes, "nll": nll, "perplexity": math.exp(nll / tokens),
            "bits_per_byte": nll / math.log(2) / n_bytes}


def _metrics_per_character(model, tokenizer, texts):  # characters are not bytes
    out = m.text_metrics(model, tokenizer, texts)
    chars = sum(len(t) for t in texts)
    return {**out, "bytes": chars, "bits_per_byte": out["nll"] / math.log(2) / chars}


def _metrics_mean_of_perplexities(model, tokenizer, texts):
    out = m.text_metrics(model, tokenizer, texts)
    each = [m.text_metrics(model, tokenizer, [t])["perplexity"] for t in texts]
    return {**out, "perplexity": sum(each) / len(each)}


def _choices_mean(model, tokenizer, prompt, choices):  # the mean, not the sum
    total = m.choice_logprobs(model, tokenizer, prompt, choices)
    return total / torch.tensor([len(tokenizer.encode_ordinary(c)) for c in choices])


def _choices_keeping_prompt_start(model, tokenizer, prompt, choices):  # cuts the end instead
    block = model.config.block_size
    context = tokenizer.encode_ordinary(prompt)
    longest = max(len(tokenizer.encode_ordinary(c)) for c in choices) if choices else 0
    return m.choice_logprobs(model, tokenizer, tokenizer.decode(context[:max(1, block - longest)])
                             if context else prompt, choices)


def _pick_per_token(model, tokenizer, prompt, choices, normalize=False):  # tokens, not bytes
    scores = m.choice_logprobs(model, tokenizer, prompt, choices)
    if normalize:
        scores = scores / torch.tensor([len(tokenizer.encode_ordinary(c)) for c in choices])
    return int(scores.argmax())


def _pick_last_of_ties(model, tokenizer, prompt, choices, normalize=False):
    scores = m.choice_logprobs(model, tokenizer, prompt, choices)
    if normalize:
        scores = scores / torch.tensor([len(c.encode()) for c in choices])
    return len(choices) - 1 - int(scores.flip(0).argmax())


def _normalize_keeping_articles(text):
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch.isspace()).split())


def _normalize_articles_inside_words(text):  # "theme" loses its "the"
    out = m.normalize_answer(text)
    for article in ("the", "an", "a"):
        out = out.replace(article, "")
    return " ".join(out.split())


def _normalize_case_sensitive(text):
    return m.normalize_answer(text.swapcase()).swapcase() if text else text


def _exact_match_substring(prediction, references):
    if isinstance(references, str):
        references = [references]
    if not references:
        raise ValueError("none")
    answer = m.normalize_answer(prediction)
    return float(any(m.normalize_answer(r) in answer for r in references))


def _pass_at_k_biased(n, c, k):  # 1 - (1 - c/n)^k: draws with replacement
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError("bad")
    return 1.0 - (1.0 - c / n) ** k


def _pass_at_k_unchecked(n, c, k):
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _pass_at_k_float_binomials(n, c, k):  # overflows past n of about 1000
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError("bad")
    if n - c < k:
        return 1.0
    return 1.0 - float(math.gamma(n - c + 1) / math.gamma(n - c - k + 1)) / float(
        math.gamma(n + 1) / math.gamma(n - k + 1))


def _bootstrap_numpy_style(values, level=0.95, resamples=1000, seed=0):  # its own random draws
    values = torch.as_tensor(values, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    means = values[torch.randint(len(values), (resamples, len(values)), generator=g)].mean(1)
    low, high = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2],
                                                   dtype=torch.float64)).tolist()
    return values.mean().item(), low, high


def _bootstrap_normal(values, level=0.95, resamples=1000, seed=0):  # mean +- z * stderr
    values = torch.as_tensor(values, dtype=torch.float64)
    if len(values) == 0 or not 0 < level < 1 or resamples < 1:
        raise ValueError("bad")
    z = torch.distributions.Normal(0, 1).icdf(torch.tensor((1 + level) / 2)).item()
    se = values.std(unbiased=False).item() / math.sqrt(len(values))
    return values.mean().item(), values.mean().item() - z * se, values.mean().item() + z * se


def _bootstrap_float32(values, level=0.95, resamples=1000, seed=0):
    mean, low, high = st.bootstrap_ci(torch.as_tensor(values, dtype=torch.float32).half(),
                                      level, resamples, seed)
    return mean, low, high


def _paired_unpaired(a, b, level=0.95, resamples=1000, seed=0):  # separate draws for a and b
    out = st.paired_bootstrap(a, b, level, resamples, seed)
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    ia = torch.randint(len(a), (resamples, len(a)), generator=g)
    ib = torch.randint(len(b), (resamples, len(b)), generator=g)
    diffs = a[ia].mean(1) - b[ib].mean(1)
    low, high = torch.quantile(diffs, torch.tensor([(1 - level) / 2, (1 + level) / 2],
                                                   dtype=torch.float64)).tolist()
    return {**out, "low": low, "high": high}


def _paired_one_sided(a, b, level=0.95, resamples=1000, seed=0):  # p not doubled
    out = st.paired_bootstrap(a, b, level, resamples, seed)
    return {**out, "p_value": out["p_value"] / 2}


def _bt_without_ties(games, n_players, ridge=0.01):  # ties dropped instead of half a win
    return st.bradley_terry([g for g in games if g[2] != 0.5], n_players, ridge)


def _bt_unregularised_step(games, n_players, ridge=0.01):  # stops after a few gradient steps
    first, second, results = st._games(games, n_players)
    theta = torch.zeros(n_players, dtype=torch.float64)
    for _ in range(5):
        p = torch.sigmoid(theta[first] - theta[second])
        grad = torch.zeros(n_players, dtype=torch.float64)
        grad.index_add_(0, first, results - p)
        grad.index_add_(0, second, p - results)
        theta = theta + 0.05 * (grad - ridge * theta)
    if ridge <= 0:
        raise ValueError("ridge")
    return theta


def _bt_win_counts(games, n_players, ridge=0.01):  # log of win share, not a likelihood fit
    if ridge <= 0:
        raise ValueError("ridge")
    first, second, results = st._games(games, n_players)
    wins = torch.full((n_players,), 0.5, dtype=torch.float64)
    played = torch.ones(n_players, dtype=torch.float64)
    wins.index_add_(0, first, results)
    wins.index_add_(0, second, 1 - results)
    played.index_add_(0, first, torch.ones_like(results))
    played.index_add_(0, second, torch.ones_like(results))
    theta = (wins / played).logit()
    return theta - theta.mean()


def _elo_simultaneous(games, n_players, k=32.0, initial=1000.0):  # expectations from the start
    st._games(games, n_players)
    if k <= 0:
        raise ValueError("k")
    ratings = torch.full((n_players,), float(initial), dtype=torch.float64)
    for i, j, result in games:
        expected = 1 / (1 + 10 ** ((initial - initial) / 400))
        ratings[i] += k * (result - expected)
        ratings[j] -= k * (result - expected)
    return ratings


def _elo_natural_log(games, n_players, k=32.0, initial=1000.0):  # e instead of 10
    first, second, results = st._games(games, n_players)
    if k <= 0:
        raise ValueError("k")
    ratings = [float(initial)] * n_players
    for i, j, result in zip(first.tolist(), second.tolist(), results.tolist()):
        expected = 1 / (1 + math.exp((ratings[j] - ratings[i]) / 400))
        ratings[i] += k * (result - expected)
        ratings[j] -= k * (result - expected)
    return torch.tensor(ratings, dtype=torch.float64)


def _ngrams_case_sensitive(text, n):
    words = __import__("re").findall(r"\w+", text)
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _contamination_any(items, corpus, n=8):  # 1.0 as soon as one n-gram is found
    return [float(s > 0) for s in st.contamination(items, corpus, n)]


def _contamination_joined(items, corpus, n=8):  # n-grams across two texts count
    return st.contamination(items, [" ".join(corpus)], n)


def _contamination_short_items_clean(items, corpus, n=8):  # short items score 0
    shares = st.contamination(items, corpus, n)
    return [0.0 if len(st._words(i)) < n else s for i, s in zip(items, shares)]


MUTANTS = [
    (checks.check_token_nll, (_nll_without_overlap,)),
    (checks.check_token_nll, (_nll_in_bits,)),
    (checks.check_token_nll, (_nll_with_padding,)),
    (checks.check_text_metrics, (_metrics_without_eot,)),
    (checks.check_text_metrics, (_metrics_per_character,)),
    (checks.check_text_metrics, (_metrics_mean_of_perplexities,)),
    (checks.check_choices, (_choices_mean, m.pick_choice)),
    (checks.check_choices, (_choices_keeping_prompt_start, m.pick_choice)),
    (checks.check_choices, (m.choice_logprobs, _pick_per_token)),
    (checks.check_choices, (m.choice_logprobs, _pick_last_of_ties)),
    (checks.check_exact_match, (_normalize_keeping_articles, m.exact_match)),
    (checks.check_exact_match, (_normalize_articles_inside_words, m.exact_match)),
    (checks.check_exact_match, (_normalize_case_sensitive, m.exact_match)),
    (checks.check_exact_match, (m.normalize_answer, _exact_match_substring)),
    (checks.check_pass_at_k, (_pass_at_k_biased,)),
    (checks.check_pass_at_k, (_pass_at_k_unchecked,)),
    (checks.check_pass_at_k, (_pass_at_k_float_binomials,)),
    (checks.check_bootstrap_ci, (_bootstrap_numpy_style,)),
    (checks.check_bootstrap_ci, (_bootstrap_normal,)),
    (checks.check_bootstrap_ci, (_bootstrap_float32,)),
    (checks.check_paired_bootstrap, (_paired_unpaired,)),
    (checks.check_paired_bootstrap, (_paired_one_sided,)),
    (checks.check_bradley_terry, (_bt_without_ties,)),
    (checks.check_bradley_terry, (_bt_unregularised_step,)),
    (checks.check_bradley_terry, (_bt_win_counts,)),
    (checks.check_elo, (_elo_simultaneous,)),
    (checks.check_elo, (_elo_natural_log,)),
    (checks.check_contamination, (_ngrams_case_sensitive, st.contamination)),
    (checks.check_contamination, (st.ngrams, _contamination_any)),
    (checks.check_contamination, (st.ngrams, _contamination_joined)),
    (checks.check_contamination, (st.ngrams, _contamination_short_items_clean)),
]

test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant, test_stubs_fail_every_check = \
    mutant_tests(MUTANTS, checks)
