# The README's commands. Each installs what it needs first (scripts/setup.sh).
VENV := .venv
LAB := $(VENV)/bin/pptp-lab
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: setup lab-up lab-down test test-kernels unit integration bench bench-suite clean

setup:
	@scripts/setup.sh

# The shipped default lab (topologies/default.yaml) with live tunnels and a status table.
lab-up: setup
	$(LAB) up default

# Removes the lab (captures go to runs/default/) and powers the engine VM off.
lab-down: setup
	$(LAB) down default
	$(LAB) vm down

# pytest exits 5 when a selection holds no tests: that is not a failure here.
# Two workers share one VM; modules with the reference subnets stay together on one of
# them (tests/integration/conftest.py), the rest run beside them. JOBS=1: one at a time.
JOBS ?= 2
XDIST = $(if $(filter 1,$(JOBS)),,-n $(JOBS) --dist loadscope)
test: setup
	$(PYTEST) $(XDIST) tests/unit tests/integration -ra --junitxml=runs/junit.xml; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# Only S19/S20 and the default topology's expect on bullseye, bookworm-backports and trixie
# (part of `make test` too).
test-kernels: setup
	$(PYTEST) tests/integration/test_other_kernels.py -ra; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

unit: setup
	$(PYTEST) tests/unit -ra; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

integration: setup
	$(PYTEST) tests/integration -ra; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# Figures for this machine (printed, never asserted): engine, analyser, lab up/down.
bench: setup
	$(VENV)/bin/python bench/engine.py
	$(VENV)/bin/python bench/guest.py
	$(VENV)/bin/python bench/analyze.py
	$(VENV)/bin/python bench/lab.py --fifty --members 50,200
	$(VENV)/bin/python bench/firstrun.py
	$(VENV)/bin/python bench/parallel.py
	$(VENV)/bin/python bench/apply.py
	$(VENV)/bin/python bench/faults.py --s28-clients 200
	$(VENV)/bin/python bench/dataflow.py

# The whole scenario suite's wall time and its shares (about 18 minutes here).
bench-suite: setup
	$(VENV)/bin/python bench/suite.py

clean:
	rm -rf runs .pytest_cache
