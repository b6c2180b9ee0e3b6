# SSP Edge: `make demo` runs the main job, `make test` runs the tests. Both set up .venv themselves
# (idempotent: the install step re-runs only when setup.cfg / pyproject.toml change).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SSP    := $(VENV)/bin/ssp
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test setup clean-venv trt-headers plugins gpu-check

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU wheel the project targets and installed first, so nothing pulls another one
$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[model,convert,dev]'
	touch $@

# the main job: the shipped checkpoint -> ONNX bundle -> INT8 calibration (its accuracy measured on held-out
# RefShapes v2) -> ssp run on a rendered RefShapes video, ONNX Runtime CPU at the default precision (INT8 where the
# calibration kept the accuracy bound and the CPU has VNNI, else FP32; ssp run prints which and why)
BUNDLE := build/bundle
DEMO_PROMPTS := --prompt "the red circle" --prompt "the blue square"
DEMO_CALIBRATION := --samples 128 --eval-samples 200 --no-fp16 --no-trt-plan-eval

$(BUNDLE)/manifest.json: $(STAMP) ssp/checkpoints/ssp_lite_refshapes.safetensors
	$(SSP) convert export --checkpoint ssp_lite_refshapes --out $(BUNDLE) --force

$(BUNDLE)/calibration/report.json: $(BUNDLE)/manifest.json
	$(SSP) calibrate $(BUNDLE) $(DEMO_CALIBRATION)
	touch $@  # calibrate saves the manifest after writing its report: the report must be the newer file

build/demo_input.mp4: $(STAMP)
	@mkdir -p build
	$(PY) -c "from ssp_edge.ssp.data.refshapes import render_video; render_video('$@')"

demo: $(BUNDLE)/calibration/report.json build/demo_input.mp4
	$(SSP) run --bundle $(BUNDLE) --source build/demo_input.mp4 $(DEMO_PROMPTS) --backend onnxruntime \
	    --out build/demo.mp4 --save-frame build/demo.png --no-stdin | tee build/demo_summary.txt
	@echo "demo: overlay video build/demo.mp4, a frame build/demo.png, summary build/demo_summary.txt"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q --durations=15

# Public TensorRT headers for building the plugin library here (never committed: third_party/ is ignored).
# Exported from a local mirror of the public NVIDIA/TensorRT repository when one is present; without it the
# plugin class / library build tests skip with that reason.
TRT_MIRROR ?= /work/.mirror/NVIDIA+TensorRT/repo
TRT_HEADER_VERSIONS := 10.3 11.1
trt-headers:
	@for v in $(TRT_HEADER_VERSIONS); do \
	  if [ -f third_party/tensorrt-$$v/include/NvInfer.h ]; then continue; fi; \
	  if [ -d "$(TRT_MIRROR)" ] && git --git-dir="$(TRT_MIRROR)" rev-parse -q --verify release/$$v >/dev/null; then \
	    mkdir -p third_party/tensorrt-$$v && \
	    git --git-dir="$(TRT_MIRROR)" archive release/$$v include | tar -x -C third_party/tensorrt-$$v && \
	    echo "TensorRT $$v headers -> third_party/tensorrt-$$v/include"; \
	  else echo "no TensorRT $$v headers (no mirror at $(TRT_MIRROR)): plugin class tests will skip"; fi; \
	done

# libssp_trt_plugins.so and libssp_trt_plugins_autoreg.so for the default CUDA archs (headers from
# TENSORRT_INCLUDE_DIR or third_party/; nvcc of the CUDA major that TensorRT was built for, plugins/README.md)
TENSORRT_INCLUDE_DIR ?= $(CURDIR)/third_party/tensorrt-11.1/include
plugins:
	cmake -S plugins -B build/plugins -DTENSORRT_INCLUDE_DIR=$(TENSORRT_INCLUDE_DIR) $(PLUGIN_CMAKE_ARGS)
	cmake --build build/plugins -j2

# On a machine with an NVIDIA GPU, CUDA's nvcc and PyTorch but no TensorRT (no network needed): the plugin kernels
# built for this GPU against PyTorch's reference ops, fused vs unfused timings, an ssp_lite bf16 forward; one JSON
# (benchmarks/gpu_check.py, <= 6 min). GPU_PYTHON: an interpreter with torch (default: the venv's, else python3).
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) -m ssp_edge.benchmarks.gpu_check $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
