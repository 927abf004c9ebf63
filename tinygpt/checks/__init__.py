"""Property checks, one module per chapter (``ch02``, ...), shared by notebooks and pytest.

Written once and run against anyone's code (after cs336's adapters and tiny-llm's
swappable reference): a notebook test cell calls ``check_x(learner_fn, seed=...)``,
pytest calls the same check on the exported reference in ``tinygpt``.
"""
