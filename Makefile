# `make test` and `make run` work on a fresh machine: they create .venv and install everything first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup bytecode lint docs test test-fast run bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

# Byte-compile losslab's own modules: where PYTHONDONTWRITEBYTECODE is set (as on this workplace's machines)
# Python never caches them and recompiles every module on every run (~55 ms of each `losslab` process).
bytecode: $(VENV)/.installed
	$(PY) -m compileall -q src/losslab

setup: $(VENV)/.installed bytecode

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

# the documentation site (MkDocs Material) into site/; --strict: a broken link or a page missing from the nav fails
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# two workers (the machines have two cores); the Ray modules share one worker (xdist_group "ray"): one runtime
# at a time
test: setup lint docs
	$(PY) -m pytest -n 2 --dist loadgroup

# feedback in about a minute: everything but the tests marked slow (real processes, Ray, long training)
test-fast: setup
	$(PY) -m pytest -m "not slow" -n 2 --dist loadgroup

run: setup
	$(VENV)/bin/losslab regress --optim adam --lr 0.01

bench: setup
	$(PY) benchmarks/bench_help.py
	$(PY) benchmarks/bench_api.py
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_process.py
	$(PY) benchmarks/bench_classify.py
	$(PY) benchmarks/bench_compare.py
	$(PY) benchmarks/bench_compare_losses.py
	$(PY) benchmarks/bench_user_model.py
	$(PY) benchmarks/bench_vectorized.py
	$(PY) benchmarks/bench_imagefolder.py
	$(PY) benchmarks/bench_executors.py
	$(PY) benchmarks/bench_any_optimizer.py
	$(PY) benchmarks/bench_lm.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
