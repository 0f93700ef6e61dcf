# RoomPulse: `make run` (the service on the real classroom clip) and `make test` (the suite).
# Both create or refresh .venv and install what they need, apt packages included.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared
CLIP ?= $(SHARED)/data/video/intel_classroom.gif
FLOAT_MODELS := models/face_detection_full_range_sparse.tflite models/face_detection_short_range.tflite

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

MEDIAPIPE_VENV := .venv-mediapipe
MEDIAPIPE_STAMP := $(MEDIAPIPE_VENV)/.installed

.PHONY: run test venv models-fetch models models-check bench system-deps clean

$(STAMP): pyproject.toml scripts/setup.sh
	./scripts/setup.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,dashboard]'
	touch $(STAMP)

venv: $(STAMP)

# Always run: the script hashes the files (fast) and fetches again only what is missing,
# truncated or altered, so `make models-fetch` repairs a damaged model.
models-fetch: $(STAMP)
	$(PY) scripts/fetch_models.py

# The int8 models are committed; 'make models' rebuilds them (and the manifest entries)
# with ai-edge-quantizer in a separate build venv, so the runtime venv stays light.
$(BUILD_STAMP): scripts/requirements-build.txt scripts/setup.sh
	./scripts/setup.sh
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/python -m pip install -q --upgrade pip
	$(BUILD_VENV)/bin/python -m pip install -q -r scripts/requirements-build.txt
	touch $(BUILD_STAMP)

models: $(BUILD_STAMP) models-fetch
	ROOMPULSE_SHARED=$(abspath $(SHARED)) TQDM_DISABLE=1 $(BUILD_VENV)/bin/python scripts/build_models.py

# Rebuild in memory and compare with the committed int8 files byte for byte.
models-check: $(BUILD_STAMP) models-fetch
	ROOMPULSE_SHARED=$(abspath $(SHARED)) TQDM_DISABLE=1 $(BUILD_VENV)/bin/python scripts/build_models.py --check

# scripts/bench.py: float vs int8 vs MediaPipe's own detector on the classroom clip.
$(MEDIAPIPE_STAMP): scripts/requirements-mediapipe.txt
	$(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install -q --upgrade pip
	$(MEDIAPIPE_VENV)/bin/python -m pip install -q -r scripts/requirements-mediapipe.txt
	touch $(MEDIAPIPE_STAMP)

bench: $(STAMP) models-fetch $(MEDIAPIPE_STAMP)
	ROOMPULSE_SHARED=$(abspath $(SHARED)) $(PY) scripts/bench.py

system-deps:
	./scripts/setup.sh --broker

run: $(STAMP) models-fetch
	$(VENV)/bin/roompulse $(if $(ENV_FILE),--env-file $(ENV_FILE)) run --source $(CLIP)

test: $(STAMP) models-fetch system-deps
	ROOMPULSE_SHARED=$(abspath $(SHARED)) $(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) $(BUILD_VENV) $(MEDIAPIPE_VENV) .state $(FLOAT_MODELS)
