# The two commands: `make run` and `make test`. Both create .venv and install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install install-browser install-sandbox run demo test crash race load lint format bench bench-pg clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	# torch==2.13.0 is pinned in pyproject: the CPU build on this machine's disk.
	$(PY) -m pip install --quiet -e '.[dev]'
	$(MAKE) --no-print-directory install-browser
	$(MAKE) --no-print-directory install-sandbox
	touch $(STAMP)

install: $(STAMP)

# The web pages' tests drive Debian's chromium (Playwright downloads no browser here).
install-browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the web page tests"; \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "warning: chromium could not be installed; the web page tests will fail under CI=true"; }

# Code-bearing models (pickles, PythonModels) load only in a bubblewrap sandbox; without
# bwrap the service refuses them (docs/api.md, "Security").
install-sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  echo "installing Debian's bubblewrap for the model sandbox"; \
	  (apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) || \
	  echo "warning: bubblewrap could not be installed; code-bearing models will be refused"; }

run: $(STAMP)
	$(VENV)/bin/matih-ml serve --host $${MATIH_HOST:-127.0.0.1} --port $${MATIH_PORT:-8080}

demo: $(STAMP)
	$(VENV)/bin/matih-ml demo

# Two workers, one test file each at a time (files share their module fixtures).
test: $(STAMP)
	$(PY) -m pytest -n $${PYTEST_WORKERS:-2} --dist loadfile

# The crash harness's long form: every cut point twice, then 40 random cuts, on SQLite
# (SIGKILL) and (with PostgreSQL up) PostgreSQL (connection cuts). `make test` cuts at
# every point once on PostgreSQL, and kills at three of them on SQLite (docs/testing.md).
crash: $(STAMP)
	seed=$${MATIH_CRASH_SEED:-$$(date +%s)}; echo "crash seed $$seed (MATIH_CRASH_SEED repeats it)"; \
	MATIH_CRASH_REPEATS=$${MATIH_CRASH_REPEATS:-2} MATIH_CRASH_RANDOM_CUTS=$${MATIH_CRASH_RANDOM_CUTS:-40} \
	  MATIH_CRASH_KILL_POINTS=$${MATIH_CRASH_KILL_POINTS:-0} MATIH_CRASH_SEED=$$seed \
	  $(PY) -m pytest -p no:xdist tests/production/test_crash_consistency.py \
	  tests/production/test_crash_consistency_pg.py

# The race tests' long forms (docs/testing.md): twenty promotions at once, where
# `make test` races ten.
race: $(STAMP)
	MATIH_RACE_VERSIONS=$${MATIH_RACE_VERSIONS:-20} \
	  $(PY) -m pytest -p no:xdist tests/api/test_concurrent_promotions.py

# The load test's long form (docs/performance.md): two replicas on one PostgreSQL and one
# moto S3, 64 users across 8 tenants for 60 s; `make test` runs a 10 s form.
load: $(STAMP)
	$(PY) benchmarks/load_test.py --seconds $${MATIH_LOAD_SECONDS:-60}

# The benchmarks on PostgreSQL (the production profile), side by side with plain MLflow on
# its own PostgreSQL database; they create and drop their own databases.
bench-pg: $(STAMP)
	$(PY) benchmarks/bench_pg.py

# ruff, then the layers (import-linter: pyproject's [tool.importlinter], see
# docs/architecture.md), then the types (mypy on src, with its ratchet in pyproject).
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

# Side by side with plain MLflow, in one run; prints ratios (see docs/performance.md).
bench: $(STAMP)
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_history.py
	$(PY) benchmarks/bench_registry.py
	$(PY) benchmarks/bench_serving.py
	$(PY) benchmarks/bench_serving.py --model forest
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_batch.py
	$(PY) benchmarks/bench_sandbox.py
	$(PY) benchmarks/bench_projection.py
	$(PY) benchmarks/bench_mlflow_protocol.py

clean:
	rm -rf $(VENV) .matih .pytest_cache
