"""Chapter 5's checks for notebook 1: perplexity and bits per byte, multiple choice by
log-likelihood, exact match, pass@k.

Oracles written here: the log-likelihood of each token read from the window the scheme
prescribes for it (each window run alone, unpadded), each option of a multiple-choice item scored on its own row,
SQuAD's normaliser spelt out word by word, and pass@k as the average over every
k-subset (``itertools.combinations``) or, for large n, Python's exact ``math.comb``.
Models are chapter 3's small random GPTs over chapter 4's check tokenizer. Part of
``tinygpt.checks.ch05``.
"""
from __future__ import annotations

import itertools
import math
import random
import string

import torch

from tinygpt.checks.ch03.shared import close, random_config
from tinygpt.checks.ch04.shared import chat_tokenizer
from tinygpt.checks.common import mismatch, raises_value_error
from tinygpt.pretraining.model import GPT
from tinygpt.tokenizer.control import EOT
from tinygpt.world import build_world


def _model(rng: random.Random):
    """A random one-layer GPT over the check tokenizer's ids, context 24-48, in eval mode."""
    config = random_config(rng, vocab_size=chat_tokenizer().n_vocab,
                           block_size=rng.choice([24, 32, 48]), n_layer=1)
    torch.manual_seed(rng.randrange(1000))
    return config, GPT(config).eval()


def _prefix_nll(model, ids: list[int]) -> list[float]:
    """-log p(ids[t] | the tokens of its window before it), token by token, each window
    (the one starting at the multiple of the context below t) run on its own row."""
    block, out, cache = model.config.block_size, [], {}
    for t in range(1, len(ids)):
        start = (t - 1) // block * block
        if start not in cache:
            with torch.no_grad():
                cache[start] = model(torch.tensor([ids[start:start + block]]))[0].double()
        out.append(-cache[start][t - 1 - start].log_softmax(-1)[ids[t]].item())
    return out


def check_token_nll(token_nll, seed: int) -> None:
    """Per-token NLL equal to a prefix-by-prefix oracle, for texts shorter than, equal to
    and several times longer than the context (windows overlapping by one token), in
    float32 with len(ids) - 1 values; fewer than 2 ids is a ValueError."""
    rng = random.Random(seed)
    config, model = _model(rng)
    block = config.block_size
    for n in (2, block, block + 1, 2 * block + rng.randrange(1, block), 3 * block + 1):
        ids = [rng.randrange(config.vocab_size) for _ in range(n)]
        got = token_nll(model, ids)
        close(f"token_nll of {n} ids with a context of {block}", got,
              torch.tensor(_prefix_nll(model, ids)), atol=1e-4)
        if got.dtype != torch.float32:
            raise AssertionError(f"token_nll must return float32, got {got.dtype}")
    raises_value_error("token_nll of one id", lambda: token_nll(model, [3]))


def _texts(rng: random.Random, n: int) -> list[str]:
    facts = build_world().facts
    texts = [rng.choice(facts).sentence for _ in range(n)]
    texts[0] += " Ünïcode, déjà vu: 日本"  # bytes, not characters
    return texts


def check_text_metrics(text_metrics, seed: int) -> None:
    """Totals over texts each scored from <|endoftext|>: tokens, UTF-8 bytes, NLL in nats,
    perplexity exp(nll / tokens) and bits per byte nll / ln 2 / bytes, against the oracle;
    an empty list or an empty text is a ValueError."""
    rng = random.Random(seed)
    tok = chat_tokenizer()
    config, model = _model(rng)
    texts = _texts(rng, rng.randrange(2, 4))
    nll = tokens = 0
    for text in texts:
        scored = _prefix_nll(model, [tok.special_tokens[EOT]] + tok.encode_ordinary(text))
        nll, tokens = nll + sum(scored), tokens + len(scored)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    want = {"tokens": tokens, "bytes": n_bytes, "nll": nll, "perplexity": math.exp(nll / tokens),
            "bits_per_byte": nll / math.log(2) / n_bytes}
    got = text_metrics(model, tok, texts)
    if not isinstance(got, dict) or set(got) != set(want):
        raise mismatch("text_metrics' keys", texts, sorted(want), sorted(got) if isinstance(
            got, dict) else got)
    for key, value in want.items():
        if not math.isclose(got[key], value, rel_tol=1e-4):
            raise mismatch(f"text_metrics' {key!r}", texts, value, got[key])
    raises_value_error("text_metrics of no texts", lambda: text_metrics(model, tok, []))
    raises_value_error("text_metrics of an empty text", lambda: text_metrics(model, tok, ["a", ""]))


def _choice_oracle(model, tok, prompt: str, choices: list[str]) -> list[float]:
    """Each option on its own row: the sum of its tokens' log-probabilities."""
    block, context = model.config.block_size, tok.encode_ordinary(prompt)
    out = []
    for choice in choices:
        option = tok.encode_ordinary(choice)
        row = context[-(block - len(option)):] + option
        with torch.no_grad():
            logp = model(torch.tensor([row[:-1]]))[0].double().log_softmax(-1)
        start = len(row) - len(option)
        out.append(sum(logp[t - 1, row[t]].item() for t in range(start, len(row))))
    return out


def check_choices(choice_logprobs, pick_choice, seed: int) -> None:
    """Scores equal to each option scored on its own row (options of different lengths,
    a prompt longer than the context trimmed at its start), the pick by sum and by score
    per UTF-8 byte, ties to the first; no options, an empty option, an empty prompt or
    an option that fills the context is a ValueError."""
    rng = random.Random(seed)
    tok = chat_tokenizer()
    config, model = _model(rng)
    facts = build_world().facts
    fact = rng.choice(facts)
    others = rng.sample([f.object for f in facts if f.object != fact.object], 3)
    choices = [" " + o for o in [fact.object, *others]]
    rng.shuffle(choices)
    choices[rng.randrange(len(choices))] += " and more"
    prompt = fact.question + (" Think hard." * rng.randrange(0, 12))
    got = choice_logprobs(model, tok, prompt, choices)
    want = torch.tensor(_choice_oracle(model, tok, prompt, choices))
    close(f"choice_logprobs of {len(choices)} options (context {config.block_size})", got, want,
          atol=1e-4)
    per_byte = want / torch.tensor([len(c.encode("utf-8")) for c in choices])
    for normalize, scores in ((False, want), (True, per_byte)):
        best = int(scores.argmax())
        picked = pick_choice(model, tok, prompt, choices, normalize=normalize)
        if picked != best and not math.isclose(scores[picked].item(), scores[best].item(),
                                                rel_tol=1e-5):
            raise mismatch(f"pick_choice(normalize={normalize})", choices, best, picked)
    same = [" mill", " mill", " mill"]
    if pick_choice(model, tok, prompt, same) != 0:
        raise AssertionError("pick_choice: equal scores go to the first option")
    raises_value_error("choice_logprobs with no options", lambda: choice_logprobs(
        model, tok, prompt, []))
    raises_value_error("choice_logprobs with an empty option", lambda: choice_logprobs(
        model, tok, prompt, [" mill", ""]))
    raises_value_error("choice_logprobs with an empty prompt", lambda: choice_logprobs(
        model, tok, "", [" mill"]))
    raises_value_error("choice_logprobs with an option as long as the context",
                       lambda: choice_logprobs(model, tok, prompt, [" mill" * config.block_size]))


def _normalised(text: str) -> str:
    kept = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(w for w in kept.split() if w not in {"a", "an", "the"})


def check_exact_match(normalize_answer, exact_match, seed: int) -> None:
    """SQuAD's normaliser on answers with case, punctuation, articles (and words that only
    contain them: 'theme', 'another') and runs of whitespace; exact match against one or
    several references; no references is a ValueError."""
    rng = random.Random(seed)
    words = ["The", "the", "A", "an", "theme", "another", "Mill", "old", "river", "Sable",
             "anvil", "a", "bank", "Abbey"]
    for _ in range(12):
        parts = [rng.choice(words) + rng.choice(["", ",", ".", "!", "'s", "?"])
                 for _ in range(rng.randrange(1, 6))]
        text = rng.choice(["", " ", "\t"]) + rng.choice([" ", "  ", "\n "]).join(parts)
        if normalize_answer(text) != _normalised(text):
            raise mismatch("normalize_answer", text, _normalised(text), normalize_answer(text))
        other = rng.choice([text.upper(), text + " river", parts[0], parts[-1]])
        refs = [other] if rng.random() < 0.5 else ["nothing like it", other]
        want = float(any(_normalised(text) == _normalised(r) for r in refs))
        for given in (refs, refs[-1]) if len(refs) == 1 else (refs,):
            got = exact_match(text, given)
            if got != want:
                raise mismatch("exact_match", (text, given), want, got)
    raises_value_error("exact_match with no references", lambda: exact_match("mill", []))


def _pass_at_k_oracle(n: int, c: int, k: int) -> float:
    if n <= 12:  # the definition: the share of k-subsets holding a correct sample
        samples = [True] * c + [False] * (n - c)
        subsets = list(itertools.combinations(samples, k))
        return sum(any(s) for s in subsets) / len(subsets)
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def check_pass_at_k(pass_at_k, seed: int) -> None:
    """pass@k equal to the average over every k-subset for small n and to the exact
    binomial ratio for large n (no overflow at n = 2000), 1 when every sample is right,
    0 when none is; ValueError for k > n, k < 1, c > n or c < 0."""
    rng = random.Random(seed)
    for _ in range(8):
        n = rng.randrange(1, 13)
        c, k = rng.randrange(0, n + 1), rng.randrange(1, n + 1)
        got = pass_at_k(n, c, k)
        if not math.isclose(got, _pass_at_k_oracle(n, c, k), abs_tol=1e-12):
            raise mismatch("pass_at_k", (n, c, k), _pass_at_k_oracle(n, c, k), got)
    n = rng.randrange(1000, 2000)
    c, k = rng.randrange(1, 20), rng.choice([1, 10, 100])
    try:
        got = pass_at_k(n, c, k)
    except (OverflowError, ZeroDivisionError) as err:
        raise AssertionError(f"pass_at_k{(n, c, k)} overflowed ({err}): compute the ratio "
                             "of binomials as a product") from None
    if not math.isclose(got, _pass_at_k_oracle(n, c, k), rel_tol=1e-9):
        raise mismatch("pass_at_k for large n", (n, c, k), _pass_at_k_oracle(n, c, k), got)
    if pass_at_k(n, n, k) != 1.0 or pass_at_k(n, 0, k) != 0.0:
        raise AssertionError("pass_at_k is 1 when every sample is correct and 0 when none is")
    for bad in ((5, 2, 6), (5, 2, 0), (5, 6, 1), (5, -1, 1)):
        raises_value_error(f"pass_at_k{bad}", lambda bad=bad: pass_at_k(*bad))
