# sam2-finetune: `make demo` and `make test` set everything up themselves.
# Stage targets take make variables, e.g. `make convert EXPORTS="a.zip b.zip" OUT=data/hf`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CLI    := $(BIN)/sam2-finetune
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

# Stage variables (override on the command line). Defaults chain the stages:
# convert -> data/$(TO), split data/hf -> data/split, leakage data/split.
EXPORTS  ?= $(wildcard sample_data/*.zip)
TO       ?= hf
REPORT   ?= data/report.md
STRATEGY ?= temporal
RATIOS   ?= 0.8 0.1 0.1
SEED     ?= 42
CONFIG   ?= presets/quick_test.yaml
FRAMES   ?=
ARGS     ?=
# Raw frames replacing overlays: FRAMES="dir_or_video ..." (one per export) or EXPORT=PATH pairs.
FRAMES_ARG = $(if $(FRAMES),--frames $(FRAMES) --)

.PHONY: setup demo test test-fast lint format info convert validate split leakage train evaluate \
        export models check tiny-model bench clean

setup: $(STAMP)

# torch first, exactly 2.13.0 (a CPU wheel on these machines); then the package and its dev
# extra under constraints.txt, which pins torch so nothing upgrades it. Re-runs only when the
# dependency files change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m sam2_finetune.demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -n 2 --durations=15 $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not slow" $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

info: setup
	$(CLI) info $(ARGS) $(FRAMES_ARG) $(EXPORTS)

convert: setup
	$(CLI) convert --to $(TO) --out $(or $(OUT),data/$(TO)) $(ARGS) $(FRAMES_ARG) $(EXPORTS)

validate: setup
	$(CLI) validate --report $(REPORT) $(ARGS) $(FRAMES_ARG) $(EXPORTS)

split: setup
	$(CLI) split $(or $(DATASET),data/hf) --out $(or $(OUT),data/split) --strategy $(STRATEGY) \
		--seed $(SEED) $(ARGS) --ratios $(RATIOS)

leakage: setup
	$(CLI) leakage $(or $(DATASET),data/split) $(ARGS)

models: setup
	$(CLI) models $(ARGS)

check: setup
	$(CLI) check $(CONFIG) $(ARGS)

FAMILY ?= smolvlm
tiny-model: setup
	$(CLI) tiny-model $(FAMILY) --out $(or $(OUT),data/tiny-$(FAMILY)) $(ARGS)

# Not built yet: say so plainly instead of failing somewhere inside the CLI.
train evaluate export:
	@echo "make $@: the $@ stage is not built yet (see the stage table in README.md)." >&2
	@exit 2

bench: setup
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_validate.py

clean:
	rm -rf data demo_output .pytest_cache .ruff_cache
