"""Chapter 4, post-training: from a model that continues text to one that answers.

``template`` is the one chat format (control tokens from ``tinygpt.tokenizer.control``),
which chapter 8's prompt assembly reuses; ``data`` renders the chapter's instruction,
preference and verifiable-task sets from ``tinygpt.world``, keeping held-out facts out of
every training set. The graded modules, exported from the chapter's notebooks: ``sft``
(loss mask, packing, the SFT step), ``preference`` (completion log-probabilities, the
reward model, Bradley-Terry, DPO) and ``grpo`` (group advantages, the GRPO loss,
critique and revise). Around them, hand-written: ``finetune`` (SFT runs, answering,
exact match), ``preference_training`` (reward-model and DPO runs), ``rl`` (sampling
groups, GRPO runs, task accuracy) and ``constitution`` (the principles and their rule
critics). ``tinygpt.align`` runs them all and writes the aligned checkpoint.
"""
