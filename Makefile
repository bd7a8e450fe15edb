# Two commands for a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint system clean mutate

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,audio]'
	touch $(STAMP)

## Transcribe the demo audio on the embedded simulator (or the real service with DASHSCOPE_API_KEY).
demo: $(STAMP)
	$(BIN)/steno transcribe scenarios/audio/*.wav --out out/demo

## Lint, type-check and run the whole test suite in two parts. First everything not marked
## `slow` (virtual time, in-memory, quick), one pytest-xdist worker per core; a file's tests
## stay in one worker (--dist loadfile), so its module fixtures are built once. Then the `slow`
## tests (real processes, real time, the real recognizer) on SLOW_WORKERS workers, also a
## file per worker: most of them wait on the real clock (paced audio, another process), so
## more of them than cores run side by side, while each CPU-bound one (marked `cpu_heavy`:
## pocketsphinx, pip) runs alone (a lock in tests/conftest.py). Both parts always run.
## TEST_WORKERS=0 SLOW_WORKERS=0 runs each part in one process.
TEST_WORKERS ?= auto
SLOW_WORKERS ?= 3
test: $(STAMP) system lint
	status=0; \
	$(BIN)/pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile || status=$$?; \
	$(BIN)/pytest -q -m slow -n $(SLOW_WORKERS) --dist loadfile --durations=25 || status=$$?; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Mutation testing of the pure core (slow; not part of `make test`): tools/mutation/SURVIVORS.md.
mutate: $(STAMP)
	bash tools/mutation/run.sh $(MODULES)

system:
	@bash tools/setup-system.sh

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache .hypothesis
