# celery-beatx developer commands.  `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DEMO_SECONDS ?= 20
PYTEST_ARGS ?=
# Test files run in parallel (pytest-xdist, one file per worker at a time): the end-to-end
# tests spend most of their time waiting for schedules, so 3 workers fit on 2 cores.
TEST_WORKERS ?= 3

.PHONY: demo test soak lint bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,postgres,mysql,holidays]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	DEMO_SECONDS=$(DEMO_SECONDS) $(PY) example_project/run_demo.py

test: $(STAMP)
	$(PY) -m pytest -q -m "not soak" -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS)

soak: $(STAMP)
	$(PY) -m pytest -q -m soak $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check celery_beatx migrations tests example_project benchmarks

# The whole comparison (about 30-40 min on 2 cores; see benchmarks/README.md).  Needs the
# PostgreSQL, Redis and RabbitMQ servers the tests use.  BENCH_ARGS="--quick" for a smoke run.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_scheduler.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
