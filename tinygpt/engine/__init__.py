"""Part II's engine: what runs on the model while a request is served (chapters 9-12).

One module per piece, each generated from its chapter's solution notebooks:
``tokenization`` (chapter 9) encodes prompts by merge replay with a chunk cache and
special-token splitting, and detokenises a stream without breaking a UTF-8 character;
``kvcache`` and ``prefill`` (chapter 10) hold the preallocated key/value cache and the
one batched forward pass that fills it; ``sampling`` (chapter 11) picks each request's
next token with its own settings and its own seeded generator; ``decode`` (chapter 12)
streams one request's answer and stops it, ``paged`` keeps many requests' keys and
values in blocks, and ``scheduler`` serves them all by continuous batching. The engine imports
chapters 2 and 3 (the tokenizer and the model) and never the service around it.
"""
