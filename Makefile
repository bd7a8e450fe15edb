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

## Lint, type-check and run the whole test suite in two parts, side by side. The `slow`
## tests (real processes, real time, the real recognizer) run on SLOW_WORKERS workers; most
## of them wait on the real clock (paced audio, another process), so more of them than
## cores run at once, while each CPU-bound one (marked `cpu_heavy`: pocketsphinx, pip) runs
## alone (a lock in tests/conftest.py, in STENO_TEST_LOCKS). Everything else (virtual time,
## in-memory: CPU-bound, and indifferent to how late it runs) runs meanwhile, one worker
## per core, at `nice` QUICK_NICE: it takes the CPU the slow part leaves idle and gives
## it back when a real-time test wants it (a niced test may wait for the CPU, hence its
## longer timeout; a hang is still caught). Its output is printed when both parts are
## done (out/test-quick.log). A Ctrl-C reaches both (env --default-signal: sh starts
## a background job with SIGINT ignored). Each worker runs a whole file at a time (--dist
## loadfile: a file's module fixtures are built once), the longest files first
## (tools/ci/order.py; --no-loadscope-reorder keeps that order). Both parts always run.
## TEST_WORKERS=0 SLOW_WORKERS=0 runs each part in one process.
TEST_WORKERS ?= auto
SLOW_WORKERS ?= 3
QUICK_NICE ?= 3
XDIST := --dist loadfile --no-loadscope-reorder
test: $(STAMP) system lint
	@mkdir -p out
	status=0; locks=$$(mktemp -d); export STENO_TEST_LOCKS=$$locks; \
	env --default-signal=INT nice -n $(QUICK_NICE) $(BIN)/pytest -q -m "not slow" -n $(TEST_WORKERS) $(XDIST) \
		--timeout 600 --durations=15 > out/test-quick.log 2>&1 & quick=$$!; \
	trap 'kill $$quick 2>/dev/null; rm -rf $$locks; exit 130' INT TERM; \
	$(BIN)/pytest -q -m slow -n $(SLOW_WORKERS) $(XDIST) --durations=25 || status=$$?; \
	wait $$quick || status=$$?; \
	rm -rf $$locks; \
	echo "---- the quick part (not slow), out/test-quick.log"; cat out/test-quick.log; \
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
