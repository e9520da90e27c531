# The two commands: `make run` serves https://localhost:8443; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian's eslint keeps its modules in /usr/share/nodejs, which Debian's own node searches
# and a Node.js installed from elsewhere does not: NODE_PATH makes either find them.
ESLINT := NODE_PATH=/usr/share/nodejs eslint --no-eslintrc -c web/eslintrc.json --max-warnings 0

.PHONY: run test system-deps lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The install compiles the SFU's fan-out (rooms/media/_fanout.c, see setup.py), so it runs
# after system-deps has put gcc and the Python headers in place.
$(VENV)/.installed: pyproject.toml setup.py rooms/media/_fanout.c | system-deps $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py rooms/media/_fanout.c | system-deps $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m certs --if-missing
	$(PY) -m server migrate
	$(PY) -m server serve --demo-if-empty

# nginx is the proxy in front of the failover test's nodes (deploy/nginx-iop.conf); the
# test runs its own copy on a loopback port. Debian's package also enables a service on
# port 80 that the tests do not use. eslint checks the browser code in web/static. gcc and
# python3-dev build the compiled fan-out.
PY_HEADER := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h
system-deps:
	@test -x /usr/bin/chromium -a -x /usr/bin/turnserver -a -x /usr/sbin/nginx -a -x /usr/bin/eslint \
		-a -x /usr/bin/gcc -a -f $(PY_HEADER) || { \
		echo "installing Debian's chromium, coturn, nginx, eslint, gcc and python3-dev for the browser, TURN and proxy tests, the JS lint and the compiled fan-out"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium coturn nginx eslint gcc python3-dev >/dev/null; }

test: $(VENV)/.installed-dev system-deps
	$(PY) -m ruff check --quiet .
	$(ESLINT) web/static
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --durations=15

lint: $(VENV)/.installed-dev system-deps
	$(PY) -m ruff check .
	$(ESLINT) web/static
	$(PY) -m mypy

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis build rooms/media/*.so
