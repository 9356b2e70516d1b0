# ARouter: `make run` to serve, `make test` to test. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
WEB_CONCURRENCY ?= 1
STAMP := $(VENV)/.installed

.PHONY: install run serve test test-deps espeak-ng chromium lint fmt bench

install: $(STAMP)

# Reinstalls only when pyproject.toml changes; llama-cpp-python compiles once (pip caches it).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createkey --team demo --name demo --skip-if-exists
	@echo "Dashboard and playground: open http://$(HOST):$(PORT)/ and sign up."
	$(MAKE) --no-print-directory serve

# uvicorn's options (protocol, header limit, timeouts) live in arouter/http_server.py, which
# the tests' live server uses too.
serve:
	$(PY) -m arouter.http_server --host $(HOST) --port $(PORT) --workers $(WEB_CONCURRENCY)

test: install test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Test-only tools: the `openai` npm package runs the spec's JavaScript examples,
# espeak-ng (Debian) speaks the Spanish fixture that translation tests hear, and Debian's
# Chromium runs the browser tests (driven by Playwright's Python package, no browser download).
test-deps: tests/js/node_modules/.installed
	@command -v espeak-ng >/dev/null || $(MAKE) --no-print-directory espeak-ng
	@test -x /usr/bin/chromium || $(MAKE) --no-print-directory chromium

tests/js/node_modules/.installed: tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $@

espeak-ng:
	apt-get install -y -q espeak-ng || (apt-get update -q && apt-get install -y -q espeak-ng)

chromium:
	apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done
