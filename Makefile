# Every target bootstraps .venv itself, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000
EXTRAS := postgres,redis,gevent,assets,flask-sqlalchemy,metrics,otel

.PHONY: run test lint format docs screenshots up down bench bench-streams bench-stream-metrics bench-storm bench-static bench-topology clean

# The storefront depends on the library by path; installing the library editable
# afterwards makes edits to src/ take effect without a reinstall.
$(STAMP): pyproject.toml storefront/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ./storefront
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" --group dev
	touch $@

# Links in mail point here; set it to the address you browse the shop at.
run: export STOREFRONT_PUBLIC_URL ?= http://$(HOST):$(PORT)
# Debug, so that mail lands in the development mailbox (/dev/mailbox).
run: $(STAMP)
	$(BIN)/flask --app storefront --debug init-db
	$(BIN)/flask --app storefront --debug demo
	$(BIN)/flask --app storefront run --debug --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage report --skip-covered

# The documentation site in docs/_build/html, every warning an error.
docs: $(STAMP)
	$(BIN)/sphinx-build --fail-on-warning --keep-going -b html docs docs/_build/html

# The screenshots in docs/storefront.md, taken by the browser tests (Chromium)
# into test-output/ and copied to docs/images/storefront/.
SCREENSHOTS := home-user-desktop product-image-user-phone login-failed-anonymous-desktop \
	orders-user-desktop orders-user-phone activity-desktop staff-staff-desktop 404-phone
screenshots: $(STAMP)
	rm -rf test-output
	$(BIN)/python -m pytest -q -p no:cacheprovider storefront/tests/test_accessibility.py \
		storefront/tests/test_browser_live.py storefront/tests/test_browser_errors.py
	mkdir -p docs/images/storefront
	for shot in $(SCREENSHOTS); do \
		found=$$(find test-output -name "$$shot.png" | head -n 1); \
		test -n "$$found" || { echo "no $$shot.png in test-output/"; exit 1; }; \
		cp "$$found" docs/images/storefront/; \
	done

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The whole topology on this machine: nginx on http://127.0.0.1:8080, the web and
# stream pools, the outbox worker, on PostgreSQL and Redis. Ctrl-C stops it.
up: $(STAMP)
	$(BIN)/python deploy/up.py

# Stops what a killed 'make up' left running.
down: $(STAMP)
	$(BIN)/python deploy/up.py --down

clean:
	rm -rf $(VENV) .coverage .mypy_cache .pytest_cache .ruff_cache .nox docs/_build dist

bench: $(STAMP)
	$(BIN)/python -m bench.unit_of_work
	$(MAKE) bench-streams
	$(MAKE) bench-stream-metrics
	$(MAKE) bench-storm
	$(MAKE) bench-static
	$(MAKE) bench-topology

# Flask-SSE 1.0, unmodified, in a virtualenv of its own outside the work tree,
# with the Flask, redis-py, gevent and gunicorn versions of .venv.
FLASK_SSE_VENV ?= /tmp/flask-sse-venv
# For example STREAMS_ARGS="--patterns 1000 10000 --flask-sse 1000 5000".
STREAMS_ARGS ?=

$(FLASK_SSE_VENV)/.installed: $(STAMP)
	$(PYTHON) -m venv $(FLASK_SSE_VENV)
	$(BIN)/python -m pip freeze --exclude-editable > $(FLASK_SSE_VENV)/constraints.txt
	$(FLASK_SSE_VENV)/bin/python -m pip install --quiet \
		-c $(FLASK_SSE_VENV)/constraints.txt \
		"flask-sse>=1.0,<1.1" flask redis gevent gunicorn packaging
	touch $@

bench-streams: $(STAMP) $(FLASK_SSE_VENV)/.installed
	$(BIN)/python -m bench.streams --flask-sse-python $(FLASK_SSE_VENV)/bin/python $(STREAMS_ARGS)

# The stream worker's deliveries per CPU-second with metrics on and off.
bench-stream-metrics: $(STAMP)
	$(BIN)/python -m bench.stream_metrics $(STREAM_METRICS_ARGS)

# 10,000 clients reconnecting at once after a stream-pool restart.
bench-storm: $(STAMP)
	$(BIN)/python -m bench.reconnect_storm $(STORM_ARGS)

# Needs nginx and wrk (Debian: apt-get install -y nginx wrk).
# For example STATIC_ARGS="--rounds 5 --duration 10".
STATIC_ARGS ?=

bench-static: $(STAMP)
	$(BIN)/python -m bench.static_files $(STATIC_ARGS)

# The whole topology (deploy/up.py) on PostgreSQL and Redis; needs nginx and wrk.
# For example TOPOLOGY_ARGS="--rounds 3 --streams 2000".
TOPOLOGY_ARGS ?=

bench-topology: $(STAMP)
	$(BIN)/python -m bench.topology $(TOPOLOGY_ARGS)
