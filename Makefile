# The two commands of the course:  make lab   |   make test
# Both create .venv on first use, install the course, prepare the data; re-running is fast.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.mmcourse-installed
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# Lab/Jupyter settings that turn off the news pop-up live in the venv, not in ~.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings

.PHONY: warm lab test test-latest constraints setup data unit sync execute browser-test clean-venv gpu-check

setup: $(STAMP) data

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,book]"
	@mkdir -p $(LAB_SETTINGS) && cp etc/jupyter/overrides.json $(LAB_SETTINGS)/overrides.json
	@touch $(STAMP)

data: $(STAMP)
	@$(PY) -m mmcourse.data

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG)

# Unit tests and every notebook (nbval, quick mode), two workers, one file per worker. One torch
# thread per worker: two workers with two threads each on two cores ran several times slower.
# A cell that runs 180 s fails instead of hanging: the longest quick cell took 11 s alone (12's
# torchrun; 04, 09 ~6 s) and no whole quick notebook took over 89 s under load. conftest.py caps
# nbclient's re-run cells at the same value. An idle kernel that never starts a cell costs ~35 s,
# not the timeout: conftest.py probes it, sends the cell once more or else fails it, and lists
# each such stall under "kernel stalls" at the end (tests/test_kernel_hang.py).
# ipykernel is held below 7 (pyproject.toml): 7.x stalled a kernel for 10 min in three runs here.
# The re-run test is split over two files so both workers share it (tests/test_rerun.py).
TEST_ENV  := MMCOURSE_QUICK=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
TEST_ARGS := -n 2 --dist loadfile --nbval-lax --nbval-current-env --nbval-cell-timeout=180 -q -p no:cacheprovider --durations=15 tests notebooks
test: setup
	$(TEST_ENV) $(PY) -m pytest $(TEST_ARGS)

# The same suite against the newest releases of every dependency (constraints.txt ignored), in its
# own venv so the pinned one stays as it is. Run it before upgrading constraints.txt, or when a
# learner reports that a fresh `pip install` broke something.
LATEST := .venv-latest
test-latest:
	@test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e ".[test,book]"
	@mkdir -p $(LATEST)/share/jupyter/lab/settings && cp etc/jupyter/overrides.json $(LATEST)/share/jupyter/lab/settings/overrides.json
	$(LATEST)/bin/python -m mmcourse.data
	$(LATEST)/bin/python -m pip list --format=freeze --exclude-editable | diff constraints.txt - | grep '^[<>]' || echo "(the newest versions equal constraints.txt)"
	MMCOURSE_LATEST=1 $(TEST_ENV) $(LATEST)/bin/python -m pytest $(TEST_ARGS)

# Pin what .venv has now as the known-good set (after `make test-latest` passed and the notebooks
# were re-executed with it).
constraints: $(STAMP)
	@{ sed -n '1,4p' constraints.txt; $(PY) -m pip list --format=freeze --exclude-editable; } > constraints.tmp && mv constraints.tmp constraints.txt

unit: setup
	MMCOURSE_QUICK=1 $(PY) -m pytest -q tests

# Re-pair the .py files after editing notebooks (or the reverse).
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

# Execute notebooks in place in FULL mode after editing their .py pair: make execute NB="05 06"
# (no NB: every lesson, in order). Records the package's source fingerprint in each notebook.
execute: setup
	@for n in $(NB); do f=$$(ls notebooks/$${n}_*.py) && \
	  $(VENV)/bin/jupytext --quiet --to ipynb --update $$f || exit 1; done
	MMCOURSE_QUICK=0 $(PY) -m mmcourse.warm --write $(NB)

# Before class: run every lesson once headless (full mode) so each heavy training is in the
# checkpoint cache and a Run All in class loads it in seconds. On a GPU machine, run this first.
warm: setup
	MMCOURSE_QUICK=0 $(PY) -m mmcourse.warm

clean-venv:
	rm -rf $(VENV)

# A real browser (Debian chromium, driven by playwright) runs the fusion notebook in JupyterLab
# and moves a slider. Installs what it needs; screenshots land in build/browser/.
browser-test: setup
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) || echo "chromium unavailable: the test will skip"
	@$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet playwright
	$(PY) -m pytest -q -p no:cacheprovider tests/browser

# The course site: a static HTML book of the committed notebooks in build/book/ (open
# build/book/index.html). Sphinx + myst-nb render the saved outputs offline and execute nothing;
# sources in book/. book-check opens it in a real browser (Debian's chromium via playwright) and
# saves screenshots to build/book-check/, failing if a page reaches outside the site.
.PHONY: book book-check
book: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m book.build build/book

book-check: book
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) -m book.check build/book build/book-check

# Regenerate the Colab install cell (2nd cell) of every notebook from mmcourse/course.py; it edits
# that one cell's source in notebooks/*.py and *.ipynb and executes nothing.
.PHONY: colab-cells
colab-cells: $(STAMP)
	$(PY) -m mmcourse.course --write

# On an NVIDIA GPU: every notebook (full mode, into a temp dir), fit vs the per-sample loop and GPU
# vs CPU, a headless LiveTrainer run, torchrun + NCCL, fp32 vs bf16/fp16; report in
# build/gpu-check.md. Without CUDA it says so and exits 0. GPU_CHECK_ARGS="--quick --budget 600".
gpu-check: setup
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)
