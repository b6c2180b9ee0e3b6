# SSP Edge: `make demo` runs the main job, `make test` runs the tests. Both set up .venv themselves
# (idempotent: the install step re-runs only when setup.cfg / pyproject.toml change).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SSP    := $(VENV)/bin/ssp
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test setup clean-venv

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU wheel the project targets and installed first, so nothing pulls another one
$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[model,convert,dev]'
	touch $@

demo: $(STAMP)
	@mkdir -p build
	$(SSP) eval --checkpoint ssp_lite_refshapes --data refshapes:test --limit 100 --save-vis build/demo_eval.png
	@echo "demo: predictions drawn in build/demo_eval.png (red = prediction, green = ground truth)"

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

clean-venv:
	rm -rf $(VENV)
