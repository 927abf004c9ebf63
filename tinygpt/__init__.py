"""tinygpt: the reference components of one small GPT system, in pipeline order.

Each chapter of the course "From raw text to a streamed answer" builds one step. The
graded code is written in that chapter's solution notebook and exported here
(modules whose first line says "Generated"); infrastructure that is not an exercise is
written here directly. A step imports only earlier steps and the shared utilities.

    runtime     device choice, paths, cache keys           (shared)
    kernels     speed infrastructure: the CPU's matmul library (shared, not an exercise)
    world       the invented world every chapter draws on  (shared data, section 5)
    curation    ch01: the crawl generator and the curation pipeline
    corpus      the course corpus: ch01's curated crawl, cached; the seam later steps read
    tokenizer   ch02: byte-level BPE, special tokens, tiktoken export
    pretraining ch03: the GPT (RoPE, attention, RMSNorm, SwiGLU, MoE), AdamW, data, checkpoints,
                DDP; the training loop and the cached data it reads
    train       ch03: the training command (python -m tinygpt.train, torchrun)
    checks      the property checks that notebook test cells and pytest call
"""
