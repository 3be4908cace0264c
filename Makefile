# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment and install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
BASE := $(VENV)/.semcat-base
FULL := $(VENV)/.semcat-full
DEMO_OUT ?= demo-output
PYTEST_ARGS ?=

.PHONY: demo test install bench bench-full docs clean

# The default install: the whole default pipeline, without torch (OpenVINO runs the backbone).
$(BASE): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -e .
	touch $(BASE)

# Tests and benchmarks compare with torch and drive Spark and Chromium: the extras on top.
$(FULL): $(BASE)
	# torch first, alone, with ranges: pip takes the local wheels (never pin a newer one)
	$(PIP) install -q 'torch>=2.4' 'torchvision>=0.19'
	$(PIP) install -q -e '.[test]'
	touch $(FULL)

install: $(FULL)

demo: $(BASE)
	$(VENV)/bin/semcat demo $(DEMO_OUT)

test: $(FULL)
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: $(FULL)  # every benchmark once at a quick size, then BENCHMARKS.md
	$(PY) benchmarks/run_all.py

bench-full: $(FULL)  # every results file at the size its committed figures come from (hours)
	$(PY) benchmarks/run_all.py --full

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
