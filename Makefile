# Two commands do all the set-up: `make run` (the product) and `make test` (the tests).
# `make bench` writes BENCHMARKS.md in its own environment (.venv-bench, with the peer libraries).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BENCH_VENV := .venv-bench

.PHONY: run test test-fast lint bench bench-http chaos fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# The project itself, editable: registers `celery -A proj instances` (celery.commands).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.test-deps: requirements-dev.txt $(VENV)/.run-deps
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.run-deps
	$(BIN)/python -m proj.devserver

# Two pytest-xdist processes (CI has 2 cores), a test file per process at a time, so a
# module's worker and fixtures start once; each process has its own Redis server and
# RabbitMQ vhosts. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
XDIST = -n $(PYTEST_WORKERS) --dist loadfile

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The inner loop: everything but the tests marked slow (chaos smoke, browser, Sentinel,
# Cluster, a dead worker under the shipped defaults). `make test` still runs them all.
test-fast: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The peers (celery-singleton, celery-once), matplotlib and the profilers never enter .venv.
$(BENCH_VENV)/.bench-deps: requirements.txt requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench: $(BENCH_VENV)/.bench-deps
	$(BENCH_VENV)/bin/python -m bench.suite $(BENCH_ARGS)

bench-http: $(VENV)/.test-deps
	$(BIN)/python -m bench.http_start

# The real stack under faults for CHAOS_SECONDS (default 300), then the invariant checker.
chaos: $(VENV)/.test-deps
	$(BIN)/python -m chaos --seconds $${CHAOS_SECONDS:-300} --timings $${CHAOS_TIMINGS:-defaults} --out var/chaos-$$(date +%Y%m%d-%H%M%S)

# Larger budgets than CI's for the schemathesis pass and the model-based test.
fuzz: $(VENV)/.test-deps
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} MODEL_EXAMPLES=$${MODEL_EXAMPLES:-1500} \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_api_fuzz.py tests/test_model.py

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(BENCH_VENV) var .pytest_cache
