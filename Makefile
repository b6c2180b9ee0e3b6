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

# the main job: the shipped checkpoint -> ONNX bundle -> ssp run on a rendered RefShapes video, ONNX Runtime CPU
BUNDLE := build/bundle
DEMO_PROMPTS := --prompt "the red circle" --prompt "the blue square"

$(BUNDLE)/manifest.json: $(STAMP) ssp/checkpoints/ssp_lite_refshapes.safetensors
	$(SSP) convert export --checkpoint ssp_lite_refshapes --out $(BUNDLE) --force

build/demo_input.mp4: $(STAMP)
	@mkdir -p build
	$(PY) -c "from ssp.data.refshapes import render_video; render_video('$@')"

demo: $(BUNDLE)/manifest.json build/demo_input.mp4
	$(SSP) run --bundle $(BUNDLE) --source build/demo_input.mp4 $(DEMO_PROMPTS) --backend onnxruntime \
	    --out build/demo.mp4 --save-frame build/demo.png --no-stdin | tee build/demo_summary.txt
	@echo "demo: overlay video build/demo.mp4, a frame build/demo.png, summary build/demo_summary.txt"

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

clean-venv:
	rm -rf $(VENV)
