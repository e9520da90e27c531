# The two commands: `make run` serves https://localhost:8443; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test system-deps lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m certs --if-missing
	$(PY) -m server migrate
	$(PY) -m server serve --demo-if-empty

# nginx is the proxy in front of the failover test's nodes (deploy/nginx-iop.conf); the
# test runs its own copy on a loopback port. Debian's package also enables a service on
# port 80 that the tests do not use.
system-deps:
	@test -x /usr/bin/chromium -a -x /usr/bin/turnserver -a -x /usr/sbin/nginx || { \
		echo "installing Debian's chromium, coturn and nginx for the browser, TURN and proxy tests"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium coturn nginx >/dev/null; }

test: $(VENV)/.installed-dev system-deps
	$(PY) -m ruff check --quiet .
	$(PY) -m pytest -q -p no:cacheprovider -n 2

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
