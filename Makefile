# Two commands: `make demo` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PIP_FLAGS := --disable-pip-version-check --progress-bar off

.PHONY: test test-fast demo airflow install system-deps lint constraints clean

install: $(INSTALLED) system-deps

# Rebuilt from scratch when pyproject.toml or constraints.txt change, so a stale
# environment can never hide a missing or wrong pin.
$(INSTALLED): pyproject.toml constraints.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q -c constraints.txt pip==$$(grep -E '^pip==' constraints.txt | cut -d= -f3 || echo 24.3.1) || true
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[torch,dev]'
	touch $(INSTALLED)

# System programs the tests drive: PostgreSQL (registry and Airflow metadata),
# Redis (Celery broker) and Chromium (browser tests of the UI plugin).
system-deps:
	@missing=""; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

lint: install
	$(BIN)/ruff check src tests dags scripts plugins

test: install lint
	$(BIN)/python -m pytest

# The unit tier alone: no database or S3 server, no browser, no Airflow processes.
test-fast: install lint
	$(BIN)/python -m pytest -m "not (slow or postgres or s3 or redis or browser)" tests/unit

demo: install
	$(BIN)/python scripts/demo.py

# The Airflow UI with these DAGs on 127.0.0.1:$(PORT) (`make airflow PORT=8081` for another port).
# The execution API lives on the same port, so tasks are told where it is too; standalone starts its
# components as `airflow ...` commands, so the virtualenv's bin goes first on PATH.
PORT ?= 8080
STANDALONE_HOME := $(CURDIR)/.airflow/standalone
airflow: install
	@echo "Airflow UI: http://127.0.0.1:$(PORT)  user: admin  password: in $(STANDALONE_HOME)/simple_auth_manager_passwords.json.generated (written at the first start)"
	AIRFLOW_HOME=$(STANDALONE_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(PORT)/execution/ PATH=$(CURDIR)/$(BIN):$$PATH \
	$(BIN)/airflow standalone

# Regenerate the pins from a clean resolve of pyproject.toml (needs the network).
constraints:
	rm -rf /tmp/airflow-mlops-resolve
	$(PYTHON) -m venv /tmp/airflow-mlops-resolve
	/tmp/airflow-mlops-resolve/bin/pip install $(PIP_FLAGS) -q -U pip
	/tmp/airflow-mlops-resolve/bin/pip install $(PIP_FLAGS) -q -e '.[torch,dev]'
	/tmp/airflow-mlops-resolve/bin/pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
