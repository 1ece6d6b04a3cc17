# Watt for Python — the two commands a new clone needs are `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= test

.PHONY: run test bench lint venv clean

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

run: $(STAMP)
	@echo "Starting the example stack in examples/hello (Ctrl-C stops it)"
	$(PY) -m watt.cli start -c examples/hello/watt.json

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/entrypoint.py $(if $(QUICK),--quick,)
	$(PY) benchmarks/mesh.py $(if $(QUICK),--quick,)

lint: $(STAMP)
	$(PY) -m ruff check watt capabilities tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
