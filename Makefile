# The two commands a newcomer needs:
#   make demo   set up .venv, then run the end-to-end demo
#   make test   set up .venv, then colcon build + install-tree checks + pytest
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.distilvpr-installed
ARGS ?=

.PHONY: setup demo test clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt setup.py scripts/setup_venv.sh
	VENV=$(VENV) scripts/setup_venv.sh
	touch $(STAMP)

demo: setup
	AMENT_PREFIX_PATH=$(abspath $(VENV)) $(PY) -m distilvpr_core.app.cli demo $(ARGS)

test: setup
	VENV=$(VENV) scripts/run_tests.sh $(ARGS)

clean-venv:
	rm -rf $(VENV)
