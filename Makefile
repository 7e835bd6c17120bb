# `make run` serves the reference app; `make test` runs lint, types and the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 2
export FLASK_APP := wsgi

.PHONY: install run test lint typecheck pytest bench clean

$(BIN)/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What the reference service needs: the extension with every driver, Redis, metrics, gunicorn.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[postgres,mysql,redis,metrics,server]'
	@touch $@

# The same, plus the test and lint tools.
$(VENV)/.installed: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed

instance/secret_key: | $(VENV)/.installed-run
	@mkdir -p instance
	@umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > $@
	@echo "wrote a new random SECRET_KEY to $@"

# Plain http on 127.0.0.1, so cookies go without the Secure flag unless you say otherwise.
run: $(VENV)/.installed-run instance/secret_key
	$(BIN)/flask db upgrade
	AUTH_COOKIE_SECURE=$${AUTH_COOKIE_SECURE:-false} $(BIN)/gunicorn --workers $(WORKERS) \
		--bind 127.0.0.1:$(PORT) --access-logfile - wsgi:app

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# wrk from Debian's packages drives the bench; Flask-JWT-Extended, compared against, goes into
# the bench environment only. SQLite always; PostgreSQL and MariaDB when BENCH_POSTGRES_URL and
# BENCH_MARIADB_URL name a server (the bench creates and drops a database of its own there).
bench: install
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is needed: apt-get install wrk (as root)"; exit 1; }
	$(BIN)/pip install --quiet flask-jwt-extended
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
