# The two commands of the course:  make lab   |   make test
# Both create .venv on first use, install the course, prepare the data; re-running is fast.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mmcourse-installed
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# Lab/Jupyter settings that turn off the news pop-up live in the venv, not in ~.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings

.PHONY: lab test setup data unit notebooks sync browser-test clean-venv

setup: $(STAMP) data

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@mkdir -p $(LAB_SETTINGS) && cp etc/jupyter/overrides.json $(LAB_SETTINGS)/overrides.json
	@touch $(STAMP)

data: $(STAMP)
	@$(PY) -m mmcourse.data

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG)

# Unit tests and every notebook (nbval, quick mode), two workers, one file per worker.
test: setup
	MMCOURSE_QUICK=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env -q tests notebooks

unit: setup
	MMCOURSE_QUICK=1 $(PY) -m pytest -q tests

# Re-pair the .py files after editing notebooks (or the reverse).
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
