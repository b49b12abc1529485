# nbllm — `make demo`, `make test` and `make lab` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test test-fast bench lab notebooks install install-test install-notebooks system-deps sim clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) -e '.[test,bench]'
	touch $@

$(VENV)/.notebooks: $(VENV)/.base pyproject.toml
	$(PIP) -e '.[notebooks]'
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test
install-notebooks: $(VENV)/.notebooks

# Debian packages the tests drive for real: Chromium (browser tests) and Redis (shared key pool).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v redis-server >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium redis-server >/dev/null; \
	fi

## make demo: the seed-000 experiment (serial vs concurrent) and a streamed answer; offline without keys.
demo: install
	$(VENV)/bin/nbllm demo

## make test: every test — simulator over sockets, real kernels, a real browser, a real Redis.
test: install-test system-deps
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: install-test
	$(PY) -m pytest -q -m "not browser and not kernel and not redis and not slow"

## make bench: benchmarks against the baselines, written to benchmarks/RESULTS.md
bench: install-test system-deps
	$(PY) -m benchmarks.run_all

## make lab: JupyterLab on the tutorials in notebooks/, with everything they import (nbllm[notebooks]).
## jupytext pairs each NN_name.ipynb with its source NN_name.py: saving one writes both.
## (--allow-root only when run as root, as in many containers: Jupyter refuses to start as root otherwise.)
LAB_PORT ?= 8888
lab: install-notebooks
	@echo "JupyterLab on notebooks/ at http://127.0.0.1:$(LAB_PORT)/lab (the exact URL, with its token, follows; Ctrl-C stops it)"
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.root_dir=notebooks \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

## make notebooks: sync each notebook from its .py source, re-execute it and save it (on the simulator unless keys are set)
notebooks: install-notebooks
	$(PY) -m notebooks.execute

sim: install
	$(VENV)/bin/nbllm sim

clean:
	rm -rf $(VENV) .pytest_cache test-output benchmarks/out
