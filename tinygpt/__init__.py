"""tinygpt: the reference components of one small GPT system, in pipeline order.

Each chapter of the course "From raw text to a streamed answer" builds one step. The
graded code is written in that chapter's solution notebook and exported here
(modules whose first line says "Generated"); infrastructure that is not an exercise is
written here directly. A step imports only earlier steps and the shared utilities.

    runtime     device choice, seeding, paths              (shared)
    world       the invented world every chapter draws on  (shared data, section 5)
    corpus      the course corpus: the one seam ch01 will replace
    tokenizer   ch02: byte-level BPE, special tokens, tiktoken export
    checks      the property checks that notebook test cells and pytest call
"""
