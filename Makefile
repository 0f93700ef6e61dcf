# RoomPulse: `make run` (the service on the real classroom clip) and `make test` (the suite).
# Both create or refresh .venv and install what they need, apt packages included.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared
CLIP ?= $(SHARED)/data/video/intel_classroom.gif

ENV_FILE ?=

# make run: 1-second windows, min group 3 (the clip shows 4 people), every frame of the
# 15 fps clip analysed. Set ROOMPULSE_MQTT_HOST (or ENV_FILE=...) to publish to a broker.
# Target-specific, so `make test` does not hand these to the tests; and not set at all
# with ENV_FILE, whose values would otherwise lose to these (the environment wins).
ifeq ($(ENV_FILE),)
run: export ROOMPULSE_WINDOW_S ?= 1
run: export ROOMPULSE_MIN_GROUP_SIZE ?= 3
run: export ROOMPULSE_FPS ?= 30
run: export ROOMPULSE_STATE_DIR ?= $(CURDIR)/.state
endif

BUILD_VENV := .venv-build
BUILD_STAMP := $(BUILD_VENV)/.installed

.PHONY: run test venv models models-check bench system-deps clean

$(STAMP): pyproject.toml scripts/setup.sh scripts/requirements-reference.txt
	./scripts/setup.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,dashboard]'
	$(PY) -m pip install -q --no-deps --require-hashes -r scripts/requirements-reference.txt
	touch $(STAMP)

venv: $(STAMP)

# The models are committed (models/manifest.json). 'make models' rebuilds them from
# models/yunet_n_dynamic.onnx with onnx2tf in a separate build venv (TensorFlow: about
# 2 GB), so the runtime venv and 'make test' stay light.
$(BUILD_STAMP): scripts/requirements-build.txt scripts/setup.sh
	./scripts/setup.sh
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/python -m pip install -q --upgrade pip
	$(BUILD_VENV)/bin/python -m pip install -q -r scripts/requirements-build.txt
	touch $(BUILD_STAMP)

models: $(BUILD_STAMP)
	ROOMPULSE_SHARED=$(abspath $(SHARED)) $(BUILD_VENV)/bin/python scripts/build_models.py

# Rebuild in a scratch directory and compare with the committed files byte for byte.
models-check: $(BUILD_STAMP)
	ROOMPULSE_SHARED=$(abspath $(SHARED)) $(BUILD_VENV)/bin/python scripts/build_models.py --check

# scripts/bench.py: bare invoke vs pipeline, int8 vs float, ours vs OpenCV's FaceDetectorYN.
bench: $(STAMP)
	ROOMPULSE_SHARED=$(abspath $(SHARED)) $(PY) scripts/bench.py

system-deps:
	./scripts/setup.sh --broker

run: $(STAMP)
	$(VENV)/bin/roompulse $(if $(ENV_FILE),--env-file $(ENV_FILE)) run --source $(CLIP)

test: $(STAMP) system-deps
	ROOMPULSE_SHARED=$(abspath $(SHARED)) $(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) $(BUILD_VENV) .venv-fallback .state
