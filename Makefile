# Dialog Engine: `make dev` runs everything locally, `make test` installs what it needs and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCAL_STAMP := $(VENV)/.installed-local
STAMP := $(VENV)/.installed

.PHONY: dev test fuzz lint typecheck build bench audit clean

UV_PIN := $(shell grep -E '^uv==' requirements-local.txt)
# uv installs the same pins several times faster than pip; pip takes over if uv cannot (no route to its index).
INSTALL = $(VENV)/bin/uv pip install -q --python $(PY) -r $(1) || $(PY) -m pip install -q -r $(1)

# What `make dev` needs and no more (requirements-local.txt): a first start doesn't wait for the test tools.
$(LOCAL_STAMP): requirements.txt requirements-local.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(VENV)/bin/uv || $(PY) -m pip install -q $(UV_PIN)
	$(call INSTALL,requirements-local.txt)
	touch $(LOCAL_STAMP)

# Everything else: tests, linters, fuzzing, the audit (requirements-dev.txt).
$(STAMP): $(LOCAL_STAMP) requirements-dev.txt
	$(call INSTALL,requirements-dev.txt)
	touch $(STAMP)

dev: $(LOCAL_STAMP)
	$(PY) -m scripts dev

# The unit tier first (seconds), then the integration tests against the real local stack.
test: unit
	scripts/ensure-chromium
	$(PY) -m pytest -q --ignore=tests/test_fuzz.py --ignore=tests/unit

# The fast tier: pure functions only (tests/unit/), no PostgreSQL, Redis or stand-in started.
.PHONY: unit
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Schemathesis over every function's OpenAPI schema (~2 min): FUZZ_EXAMPLES=200 FUZZ_RANDOM=1 digs deeper.
fuzz: $(STAMP)
	$(PY) -m pytest -q tests/test_fuzz.py

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy shared api functions

# Known vulnerabilities in every pinned dependency (and what they pull in); DEPLOYMENT.md §6.
audit: $(STAMP)
	$(PY) -m scripts deps audit

build: $(STAMP)
	$(PY) -m scripts build

bench: $(STAMP)
	$(PY) bench/cold_start.py

# LangChain and LlamaIndex beside the engine (bench/frameworks.py; README "Beside LangChain and LlamaIndex"):
# a virtualenv of their own, never .venv, the project's pins winning. Not part of `make test`.
# make bench-frameworks FRAMEWORKS_ARGS="--chunks 10000 --only turns"
FRAMEWORKS_VENV ?= .bench-frameworks
FRAMEWORKS_ARGS ?=
.PHONY: bench-frameworks
bench-frameworks: $(LOCAL_STAMP)
	test -x $(FRAMEWORKS_VENV)/bin/python || $(VENV)/bin/uv venv -q --python $(PY) $(FRAMEWORKS_VENV)
	$(VENV)/bin/uv pip install -q --python $(FRAMEWORKS_VENV)/bin/python -r requirements-local.txt \
		-r bench/requirements-frameworks.txt --override requirements.txt
	$(FRAMEWORKS_VENV)/bin/python bench/frameworks.py $(FRAMEWORKS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .vercel
