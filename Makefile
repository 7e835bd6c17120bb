# `make run` serves the reference app; `make test` runs lint, types and the whole suite;
# `make floors` runs the suite at the lowest supported releases.
PYTHON ?= python3
# The floors are tested on the lowest Python supported.
FLOORS_PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 2
export FLASK_APP := wsgi

.PHONY: install run test lint typecheck pytest docs floors bench clean

$(BIN)/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# What the reference service needs: the extension with every driver, Redis, metrics, gunicorn.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/pip
	$(BIN)/pip install --quiet -e '.[postgres,mysql,redis,metrics,server]'
	@touch $@

# Every extra, plus the dev group of pyproject.toml (test and lint tools; pip 25.1 reads groups).
EXTRAS := postgres,mysql,redis,metrics,server,client,bcrypt
$(VENV)/.installed: pyproject.toml | $(BIN)/pip
	$(BIN)/python -m pip install --quiet 'pip>=25.1'
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]' --group dev
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

# The site of mkdocs.yml, built into a temporary directory and dropped: any warning fails it, a
# broken link or anchor among them (`$(BIN)/mkdocs serve` to read it). Not part of `make test`.
docs: install
	@site_dir=$$(mktemp -d) && trap 'rm -rf "$$site_dir"' EXIT \
		&& $(BIN)/mkdocs build --strict --quiet --site-dir "$$site_dir"

# The suite at tests/floors.txt (pip constraints), in a virtualenv made anew in a temporary
# directory, in about 5 minutes: on every database, and the tests marked slow (gunicorn, the
# clients, races) on SQLite alone (`-k` matches markers too); of the browser tests only the
# https deployments (Werkzeug 3.0 writes the Partitioned attribute another way); not those that
# build the wheel and install the newest releases.
FLOORS_SELECTION := -k 'not slow or not (postgresql or mariadb)' --ignore=tests/test_browser.py \
	--ignore=tests/test_browser_react.py --ignore=tests/test_packaging.py --ignore-glob='tests/test_wheel_host*.py'
floors:
	@$(FLOORS_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "the floors need Python 3.11 or newer (set FLOORS_PYTHON)"; exit 1; }
	@floors_venv=$$(mktemp -d) && trap 'rm -rf "$$floors_venv"' EXIT \
		&& $(FLOORS_PYTHON) -m venv "$$floors_venv" \
		&& "$$floors_venv/bin/python" -m pip install --quiet --upgrade 'pip>=25.1' \
		&& "$$floors_venv/bin/pip" install --quiet -c tests/floors.txt \
			-e '.[$(EXTRAS)]' --group test \
		&& "$$floors_venv/bin/pytest" $(FLOORS_SELECTION) $(PYTEST_ARGS)

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
