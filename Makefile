# Watt for Python — the two commands a new clone needs are `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= test

.PHONY: run test bench lint venv clean dashboard

venv: $(STAMP)

# Create .venv with a Python >= 3.13 (found by running candidates), then
# install the project in editable mode with its test extra.
$(STAMP): pyproject.toml
	@if ! $(PY) -c 'import sys, _interpreters; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then \
		rm -rf $(VENV); \
		base="$$(./scripts/find-python)" || exit 1; \
		echo "creating $(VENV) with $$base"; \
		"$$base" -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $(STAMP)

# EXAMPLE=stack: the gateway in front of FastAPI, Starlette, Flask and static files.
EXAMPLE ?= hello
run: $(STAMP)
	@echo "Starting the example stack in examples/$(EXAMPLE) (Ctrl-C stops it)"
	$(PY) -m watt.cli start -c examples/$(EXAMPLE)/watt.json

test: $(STAMP)
	@scripts/system-deps
	$(PY) -m pytest

# The bench extra's packages only, on top of $(STAMP): the project itself is not
# reinstalled, and `make test`/`make run` never pay for gunicorn or matplotlib.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["bench"]))' > $(VENV)/bench-requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(VENV)/bench-requirements.txt
	@touch $@

# Every scenario of benchmarks/run.py (QUICK=1: under 3 minutes on 2 cores).
bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null 2>&1 || echo "wrk not found: apt-get install wrk (Debian/Ubuntu) or brew install wrk; falling back to the slower built-in Python load generator"
	@command -v h2load >/dev/null 2>&1 || echo "h2load not found (HTTP/2 load): apt-get install nghttp2-client or brew install nghttp2"
	$(PY) benchmarks/run.py $(if $(QUICK),--quick,)

# The admin dashboard's page, committed in watt/management/dashboard/static/: rebuilt from
# frontend/dashboard/ with the locked npm packages (uPlot and esbuild, both MIT).
dashboard:
	cd frontend/dashboard && npm ci --no-audit --no-fund && node build.mjs

lint: $(STAMP)
	$(PY) -m ruff check watt capabilities tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
