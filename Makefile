# Entry points of the study. The first run builds the pinned venv (scripts/ensure_env.sh).
#   make study              run every notebook, default profile (PROFILE=smoke|default|paper)
#   make smoke              the same with PROFILE=smoke (minutes)
#   make test               the test suite
#   make lab                JupyterLab on the notebooks (LAB_ARGS="--ip=0.0.0.0 --port=8888")
# Extra run_all.py options: make study ARGS="--only 03 -p n_jobs=1"

PROFILE ?= default
ARGS ?=
LAB_ARGS ?=
PYTEST_ARGS ?=
SHELL := /bin/bash

# a shell snippet: builds/verifies the venv and puts its path in $venv, or stops
ENV := venv="$$(scripts/ensure_env.sh | tail -n 1)"; \
	[[ -x "$$venv/bin/python" ]] || { echo "make: environment setup failed" >&2; exit 1; }

.PHONY: study smoke test lab env

env:
	@$(ENV); echo "$$venv"

study:
	@$(ENV); "$$venv/bin/python" run_all.py --profile $(PROFILE) $(ARGS)

smoke:
	@$(MAKE) --no-print-directory study PROFILE=smoke

test:
	@$(ENV); "$$venv/bin/python" -m pytest -q tests $(PYTEST_ARGS)

# as root (containers) JupyterLab refuses to start unless told --allow-root
lab:
	@$(ENV); root=""; [[ "$$(id -u)" == 0 ]] && root="--allow-root"; \
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" PATH="$$venv/bin:$$PATH" \
	"$$venv/bin/python" -m jupyter lab $$root $(LAB_ARGS) notebooks
