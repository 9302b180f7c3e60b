# One-command set-up: every target creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint fixtures clean

# constraints.txt pins every package installed (pyproject.toml says what is needed, it says which
# versions), so that a fresh clone installs what the suite last passed with.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,otel]'
	touch $(STAMP)

# Serving needs neither the test nor the benchmark tools (pandas, scipy, scikit-learn, mypy…: most of
# a first make run's install): run installs the server alone; test, lint and bench add the rest.
RUN_STAMP := $(VENV)/.installed-run
$(RUN_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[otel]'
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m app serve

# The playground's browser test needs Debian's chromium; install it where we can (root with apt).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the playground browser test"; \
		{ apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "could not install chromium: the browser test will say so and skip"; \
	else \
		echo "chromium is not installed and cannot be installed here: the browser test will say so and skip"; \
	fi

# The GraphQL-over-HTTP audit test runs the spec's npm package (pinned in tests/http_audit/package-lock.json).
AUDIT := tests/http_audit
$(AUDIT)/node_modules/.package-lock.json: $(AUDIT)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(AUDIT) --silent --no-audit --no-fund \
			|| echo "could not install the GraphQL-over-HTTP audit: its test will say so and fail"; \
	else \
		echo "npm is not installed: the GraphQL-over-HTTP audit test will say so"; \
	fi

test: $(STAMP) $(CHROMIUM) $(AUDIT)/node_modules/.package-lock.json
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check app graphql_schema tests bench fixtures
	$(BIN)/mypy app graphql_schema

fixtures: $(STAMP)
	$(BIN)/python fixtures/generate.py

clean:
	rm -rf $(VENV) data/*.sqlite3*
