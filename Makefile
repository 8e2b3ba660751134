# voltloop — two commands do everything on a fresh machine:
#   make demo   set up .venv and run a simulated dry-run campaign on embedded SQLite
#   make test   set up .venv and run the unit and integration tests
#
# Torch goes in first and pinned, through pip (a CPU wheel lies on this machine's
# disk; an open range can pull a multi-GB CUDA build), then everything else through
# the constraints file of known-good pins (torch among them, so nothing replaces it).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.voltloop-installed
TORCH  := torch==2.13.0
# uv installs the ~170 pinned packages in parallel (about 10 s against pip's 2-3 min);
# pip is the fallback if uv cannot reach the index.
UV     := uv==0.13.9
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-integration lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH) $(UV)
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -c constraints.txt -e ".[all]" \
	  || $(PIP) install -q -c constraints.txt -e ".[all]"
	$(PY) -c "from voltloop.drivers.sim.compiled import compile_ahead; compile_ahead()"
	@touch $(STAMP)

demo: $(STAMP)
	@bash docs/demo.sh $(VENV)/bin/voltloop

test: $(STAMP)
	$(PY) -m pytest tests/unit tests/integration $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
