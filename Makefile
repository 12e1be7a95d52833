# sam2-finetune: `make demo` and `make test` set everything up themselves; `make help` lists
# the targets and their variables. Stage targets take make variables, e.g.
# `make convert EXPORTS="a.zip b.zip" OUT=data/hf`.
# `## text` after a target, or a `## VARIABLE text` line above a variable, is its line in
# `make help`.

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
## EXPORTS  SAM2 export ZIPs or folders (info, convert, validate)
EXPORTS  ?= $(wildcard sample_data/*.zip)
## TO       convert: output format (hf, llava, sharegpt, coco)
TO       ?= hf
## OUT      output folder (default: data/TO, data/split, data/tiny-FAMILY)
OUT      ?=
## DATASET  split / leakage input (default: data/hf, data/split)
DATASET  ?=
## REPORT   validate: Markdown report path
REPORT   ?= data/report.md
## STRATEGY split: temporal, stratified or random
STRATEGY ?= temporal
## RATIOS   split: train, validation and test shares (three numbers)
RATIOS   ?= 0.8 0.1 0.1
## SEED     split: seed
SEED     ?= 42
## CONFIG   check: a config file or preset name
CONFIG   ?= presets/quick_test.yaml
## FAMILY   tiny-model: model family
FAMILY   ?= smolvlm
## FRAMES   raw frames: one folder/video per export in order, or EXPORT=PATH pairs
FRAMES   ?=
## PIPELINE a pipeline file for `make run` (default presets/pipelines/demo.yaml)
## ARGS     more options for the command, e.g. ARGS=--overwrite
ARGS     ?=
# Each FRAMES word becomes its own --frames option (the CLI takes one value per --frames).
FRAMES_ARG = $(foreach source,$(FRAMES),--frames $(source))

.PHONY: help setup demo test test-fast lint docs format info convert validate split leakage train run predict \
        evaluate export models check tiny-model bench clean

setup: $(STAMP) ## Create .venv: torch 2.13.0 (CPU), then the package with its dev extra

# torch first, exactly 2.13.0 (a CPU wheel on these machines); then the package and its dev
# extra under constraints.txt, which pins torch so nothing upgrades it. Re-runs only when the
# dependency files change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

help: ## List the targets and their variables
	@echo "Targets (make TARGET [VARIABLE=value ...]):"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z -]*:.*## / {printf "  %-22s %s\n", $$1, $$2}' \
		$(firstword $(MAKEFILE_LIST))
	@echo "Variables:"
	@awk '/^## [A-Z_]+ / {name = $$2; sub(/^## [A-Z_]+ +/, ""); printf "  %-22s %s\n", name, $$0}' \
		$(firstword $(MAKEFILE_LIST))

demo: setup ## Run the whole pipeline on the sample data (demo_output/)
	$(BIN)/python -m sam2_finetune.demo $(ARGS)

test: setup ## Run the test suite (pytest -n 2)
	$(BIN)/python -m pytest -n 2 --durations=15 $(ARGS)

test-fast: setup ## Run the tests not marked slow
	$(BIN)/python -m pytest -n 2 -m "not slow" $(ARGS)

lint: setup ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: setup ## Regenerate the option tables in docs/ from the commands' parsers
	$(BIN)/python -m sam2_finetune.reference

format: setup ## ruff format and ruff check --fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

info: setup ## Summarise EXPORTS
	$(CLI) info $(ARGS) $(FRAMES_ARG) $(EXPORTS)

convert: setup ## Convert EXPORTS to TO in OUT
	$(CLI) convert --to $(TO) --out $(or $(OUT),data/$(TO)) $(ARGS) $(FRAMES_ARG) $(EXPORTS)

validate: setup ## Check EXPORTS' data quality; write REPORT
	$(CLI) validate --report $(REPORT) $(ARGS) $(FRAMES_ARG) $(EXPORTS)

split: setup ## Split DATASET into train/validation/test in OUT (STRATEGY, RATIOS, SEED)
	$(CLI) split $(or $(DATASET),data/hf) --out $(or $(OUT),data/split) --strategy $(STRATEGY) \
		--ratios $(RATIOS) --seed $(SEED) $(ARGS)

leakage: setup ## Check a split DATASET for leakage between its splits
	$(CLI) leakage $(or $(DATASET),data/split) $(ARGS)

models: setup ## List model families with memory estimates
	$(CLI) models $(ARGS)

check: setup ## Check this machine against CONFIG
	$(CLI) check $(CONFIG) $(ARGS)

tiny-model: setup ## Build a tiny offline model of FAMILY in OUT
	$(CLI) tiny-model $(FAMILY) --out $(or $(OUT),data/tiny-$(FAMILY)) $(ARGS)

train: setup ## Fine-tune as CONFIG says (ARGS="--set training.max_steps=50", "--resume")
	$(CLI) train $(CONFIG) $(ARGS)

run: setup ## Run every stage of PIPELINE, skipping unchanged ones (ARGS=--force)
	$(CLI) run $(or $(PIPELINE),presets/pipelines/demo.yaml) $(ARGS)

## MODEL    evaluate / predict: a run folder, its best/, or an export
MODEL    ?=
## DATA     evaluate: a split dataset folder (default: MODEL/data/split, the run's own split)
DATA     ?=
evaluate: setup ## Score MODEL on DATA's test split; write metrics, predictions, pictures to OUT
	@test -n "$(MODEL)" || { echo "make evaluate: set MODEL=RUN_OR_EXPORT_DIR (e.g. runs/quick_test)" >&2; exit 2; }
	$(CLI) evaluate --model $(MODEL) --data $(or $(DATA),$(MODEL)/data/split) \
		--out $(or $(OUT),$(MODEL)/evaluation) $(ARGS) $(FRAMES_ARG)

## INPUT    predict: image files, folders of images, or videos
predict: setup ## Predict INPUT with MODEL into OUT (default data/predict); videos become SAM2 exports
	@test -n "$(MODEL)" -a -n "$(INPUT)" || { echo "make predict: set MODEL=RUN_OR_EXPORT and INPUT=\"IMAGES, FOLDERS or VIDEOS\" (e.g. make predict MODEL=runs/quick_test INPUT=sample_data/street_scene.mp4)" >&2; exit 2; }
	$(CLI) predict --model $(MODEL) --out $(or $(OUT),data/predict) $(ARGS) -- $(INPUT)

## RUN      export: the run folder to export (default runs/quick_test)
RUN      ?= runs/quick_test
export: setup ## Export RUN's model to OUT (default exports/RUN-NAME; ARGS="--merge")
	$(CLI) export $(RUN) --out $(or $(OUT),exports/$(notdir $(RUN))) $(ARGS)

bench: setup ## Run the benchmarks (ratios against baselines measured in the same run)
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_validate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_kbit_memory.py
	$(BIN)/python benchmarks/bench_augment.py
	$(BIN)/python benchmarks/bench_timing.py

clean: ## Remove data/, demo_output/ and caches
	rm -rf data demo_output pipeline_output .pytest_cache .ruff_cache
