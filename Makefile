# Dialog Engine: `make dev` runs everything locally, `make test` installs what it needs and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test fuzz lint typecheck build bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

dev: $(STAMP)
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

build: $(STAMP)
	$(PY) -m scripts build

bench: $(STAMP)
	$(PY) bench/cold_start.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .vercel
