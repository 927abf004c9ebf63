"""Chapter 5, evaluation: the metrics of a report card.

``metrics`` (notebook 1) holds perplexity and bits per byte, multiple-choice scoring by
log-likelihood, exact match and pass@k.
"""
