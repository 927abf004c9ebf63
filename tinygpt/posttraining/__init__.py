"""Chapter 4, post-training: from a model that continues text to one that answers.

``template`` is the one chat format (control tokens from ``tinygpt.tokenizer.control``),
which chapter 8's prompt assembly reuses; ``data`` renders the chapter's instruction,
preference and verifiable-task sets from ``tinygpt.world``, keeping held-out facts out of
every training set.
"""
