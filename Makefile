# Dialog Engine: `make dev` runs everything locally, `make test` installs what it needs and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCAL_STAMP := $(VENV)/.installed-local
STAMP := $(VENV)/.installed

.PHONY: dev test fuzz lint typecheck build bench audit clean

# What `make dev` needs and no more (requirements-local.txt): a first start doesn't wait for the test tools.
$(LOCAL_STAMP): requirements.txt requirements-local.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-local.txt
	touch $(LOCAL_STAMP)

# Everything else: tests, linters, fuzzing, the audit (requirements-dev.txt).
$(STAMP): $(LOCAL_STAMP) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

dev: $(LOCAL_STAMP)
	$(PY) -m scripts dev

test: $(STAMP)
	scripts/ensure-chromium
	$(PY) -m pytest -q --ignore=tests/test_fuzz.py

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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .vercel
