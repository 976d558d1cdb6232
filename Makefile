# The two commands the README promises, each from a fresh clone:
#   make demo   set up, generate sample data, materialize every asset on the embedded SQLite warehouse
#   make test   set up and run the test suite (PostgreSQL tests use the local server below)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CUSTOMER_ANALYTICS_TEST_PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export CUSTOMER_ANALYTICS_TEST_PG_URL
SAMPLE_CUSTOMERS ?= 2000
# Test processes (pytest-xdist). Each test module runs whole in one of them (--dist loadfile), so a
# module's shared fixtures are built once; every test has its own schemas, folders and ports.
TEST_WORKERS ?= 2
# Where `make dev` serves the UI.
DEV_HOST ?= 127.0.0.1
DEV_PORT ?= 3000
# Dagster's daemon logs two INFO lines per sensor tick whatever the sensor does: `warning` hides them.
DEV_LOG_LEVEL ?= info

.PHONY: setup demo test dev clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/customer-analytics generate-sample --out $${CUSTOMER_ANALYTICS_LANDING_DIR:-data/landing} --customers $(SAMPLE_CUSTOMERS)
	$(BIN)/customer-analytics materialize

test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# `exec`: the shell gives way, so make's SIGTERM reaches the wrapper, which stops dagster dev and every
# process it started (customer_analytics/dev_server.py says why dagster dev alone may not stop).
dev: setup
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/dagster_home} $(BIN)/customer-analytics init-instance
	exec env DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/dagster_home} $(BIN)/python -m customer_analytics.dev_server \
		-w workspace.yaml -h $(DEV_HOST) -p $(DEV_PORT) --log-level $(DEV_LOG_LEVEL)

clean:
	rm -rf data dagster_home
