# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_MYSQL_URL ?= mysql://root@127.0.0.1:3306/test
PYTEST_ARGS ?=
export TEST_POSTGRES_URL TEST_MYSQL_URL

# The other combinations of the version matrix (make test is Python 3.11 + Django 5.2):
# MATRIX_PY + MATRIX_DJANGO in MATRIX_VENV. Default: the newest, 3.13 + 6.1, which also
# runs mypy. (pyenv's shims answer `command -v` without working: try the installed path.)
MATRIX_PY ?= 3.13
MATRIX_DJANGO ?= 6.1
MATRIX_PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/$(MATRIX_PY)*/bin/python$(MATRIX_PY)) \
	$(shell command -v python$(MATRIX_PY) 2>/dev/null))
MATRIX_VENV ?= .venv-py$(subst .,,$(MATRIX_PY))-dj$(subst .,,$(MATRIX_DJANGO))
MBIN := $(MATRIX_VENV)/bin

.PHONY: install install-matrix demo test test-sqlite test-postgres test-mariadb test-matrix typecheck docs \
	package-check lint format clean \
	bench bench-smoke bench-history bench-profile bench-soak bench-knobs bench-mariadb bench-shapes \
	bench-many-workers

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

$(MBIN)/.installed: pyproject.toml
	@test -x "$(MATRIX_PYTHON)" || { echo "Python $(MATRIX_PY) not found: set MATRIX_PYTHON"; exit 1; }
	$(MATRIX_PYTHON) -m venv $(MATRIX_VENV)
	$(MBIN)/python -m pip install --quiet --upgrade pip
	$(MBIN)/python -m pip install --quiet -e ".[dev,typecheck]" "django~=$(MATRIX_DJANGO).0"
	touch $@

install-matrix: $(MBIN)/.installed

$(BIN)/.docs-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	touch $@

## demo: the example project on SQLite: web + worker, admin user, demo jobs. Ctrl-C stops both.
demo: install
	cd example_project && ../$(BIN)/python manage.py migrate --noinput
	cd example_project && ../$(BIN)/python manage.py demo_setup
	cd example_project && ../$(BIN)/python manage.py enqueue_demo_jobs
	cd example_project && ../$(BIN)/python run_demo.py

## test: the whole suite on SQLite, PostgreSQL (TEST_POSTGRES_URL) and MariaDB/MySQL
## (TEST_MYSQL_URL). `make -j3 test` runs the three at once.
test: install test-sqlite test-postgres test-mariadb

test-sqlite: install
	@echo "==> tests on SQLite"
	TEST_DB=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install
	@if $(BIN)/python tests/pg_reachable.py; then \
		echo "==> tests on PostgreSQL ($(TEST_POSTGRES_URL))"; \
		TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS); \
	else \
		echo ""; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		echo "!!  PostgreSQL is NOT reachable: the PostgreSQL half of the suite did  !!"; \
		echo "!!  NOT run. Start PostgreSQL or set TEST_POSTGRES_URL.                 !!"; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		if [ "$$CI" = "true" ]; then exit 1; fi; \
	fi

# mysqlclient builds against the client library (Debian: libmariadb-dev, pkg-config); it
# is installed only here, so that `make install` works on a machine without them.
$(BIN)/.mysql-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev,mysql]"
	touch $@

test-mariadb: install
	@if $(MAKE) --no-print-directory $(BIN)/.mysql-installed && $(BIN)/python tests/mysql_reachable.py; then \
		echo "==> tests on MariaDB/MySQL ($(TEST_MYSQL_URL))"; \
		TEST_DB=mariadb $(BIN)/python -m pytest $(PYTEST_ARGS); \
	else \
		echo ""; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		echo "!!  MariaDB/MySQL is NOT reachable (or mysqlclient would not install):  !!"; \
		echo "!!  the MariaDB half of the suite did NOT run. Start MariaDB, set        !!"; \
		echo "!!  TEST_MYSQL_URL, or apt-get install libmariadb-dev pkg-config.       !!"; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
		if [ "$$CI" = "true" ]; then exit 1; fi; \
	fi

## test-matrix: the suite on MATRIX_PY + MATRIX_DJANGO (default 3.13 + 6.1), on MATRIX_DBS
## (default: SQLite then PostgreSQL). CI passes PYTEST_ARGS='-m "not slow"' and one database
## per combination (see .ci/run).
MATRIX_DBS ?= sqlite postgres
test-matrix: install-matrix
	@for db in $(MATRIX_DBS); do \
		if [ "$$db" = postgres ] && ! $(MBIN)/python tests/pg_reachable.py; then \
			echo "!! PostgreSQL is NOT reachable: the Django $(MATRIX_DJANGO) tests on it did NOT run"; \
			if [ "$$CI" = "true" ]; then exit 1; fi; \
			continue; \
		fi; \
		echo "==> tests on $$db, $$($(MBIN)/python -c 'import sys, django; print(f"Python {sys.version.split()[0]}, Django {django.__version__}")')"; \
		TEST_DB=$$db $(MBIN)/python -m pytest $(PYTEST_ARGS) || exit 1; \
	done

## typecheck: mypy with django-stubs on the package (Django 6.1 stubs).
typecheck: install-matrix
	$(MBIN)/mypy

## docs: the Sphinx site in docs/_build/html; warnings are errors.
docs: $(BIN)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

## package-check: build sdist + wheel, install the wheel in a clean venv, run the example on it.
package-check: install
	.ci/package-check $(BIN)/python

## lint: ruff, formatting, and migrations in sync with the models.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings
	cd example_project && ../$(BIN)/python manage.py makemigrations --check --dry-run

## bench: our worker vs pgqueuer, procrastinate, django-tasks-db, one table of ratios,
## and our figures as shares of the raw-SQL ceiling measured in the same rounds
## (private PostgreSQL, a virtualenv per system under bench/.venvs; ~10-15 min). See bench/README.md.
bench:
	$(PYTHON) bench/run.py

bench-smoke:
	$(PYTHON) bench/run.py --smoke
	$(PYTHON) bench/history.py --smoke
	$(PYTHON) bench/profile_worker.py --smoke
	$(PYTHON) bench/soak.py --smoke
	$(PYTHON) bench/shapes.py --smoke
	$(PYTHON) bench/many_workers.py --smoke

## bench-mariadb: our worker beside django-tasks-db on the MariaDB at BENCH_MYSQL_URL
## (default root@127.0.0.1:3306; two databases of its own, dropped at the end; ~6 min)
bench-mariadb:
	$(PYTHON) bench/mariadb.py

## bench-history: claim, drain and admin with 2 million finished rows vs none
bench-history:
	$(PYTHON) bench/history.py

## bench-profile: py-spy profile of runworker draining 10,000 no-op jobs
bench-profile:
	$(PYTHON) bench/profile_worker.py

## bench-soak: worker RSS over 100,000 jobs at --concurrency 8
bench-soak:
	$(PYTHON) bench/soak.py

## bench-knobs: drain rate per worker option (log level, concurrency, LISTEN)
bench-knobs:
	$(PYTHON) bench/knobs.py

## bench-shapes: real job shapes (ORM write, 50 ms sleep, 1 MB arguments) against the peers
bench-shapes:
	$(PYTHON) bench/shapes.py

## bench-many-workers: 1-32 runworker processes on one server, direct and through PgBouncer
bench-many-workers:
	$(PYTHON) bench/many_workers.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .venv-py3*-dj* build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache \
		docs/_build example_project/db.sqlite3*
