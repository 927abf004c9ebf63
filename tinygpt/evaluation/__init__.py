"""Chapter 5, evaluation: the metrics of a report card and what makes them comparable.

``metrics`` (notebook 1) holds perplexity and bits per byte, multiple-choice scoring by
log-likelihood, exact match and pass@k; ``stats`` (notebook 2) bootstrap intervals,
Bradley-Terry and Elo ratings and the n-gram contamination check; ``items`` (hand-written)
renders the evaluation sets from the world's facts; ``report`` (hand-written) is the
report card that ``python -m tinygpt.evaluate`` prints.
"""
