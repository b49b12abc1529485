# nbllm — `make demo` and `make test` work on a fresh machine: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test test-fast bench notebooks install install-test system-deps sim clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) -e '.[test,bench]'
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

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

## make notebooks: re-execute the tutorial notebooks in place (on the simulator unless keys are set)
notebooks: install-test
	$(PY) -m notebooks.execute

sim: install
	$(VENV)/bin/nbllm sim

clean:
	rm -rf $(VENV) .pytest_cache test-output benchmarks/out
