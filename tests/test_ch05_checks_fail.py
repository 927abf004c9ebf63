"""Every chapter 5 check rejects a plausible wrong answer (a test must be able to fail)."""
from __future__ import annotations

import math

import torch

from tinygpt.checks import ch05 as checks
from tinygpt.evaluation import metrics as m
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
]

test_check_rejects_a_wrong_answer, test_every_check_has_a_mutant, test_stubs_fail_every_check = \
    mutant_tests(MUTANTS, checks)
