"""Chapter 1, data collection and curation: from a messy crawl to the course corpus.

``crawl`` (hand-written) generates the crawl and its ground truth; ``clean``,
``quality`` and ``neardup`` are generated from the chapter's solution notebooks;
``pipeline`` (hand-written) composes them into the corpus every later chapter trains on;
``fastminhash`` (hand-written) is the fast route to near-duplicate signatures that the
book page and the benchmark measure against ``neardup``'s graded one.
"""
