# One-command set-up, test and demo. `make test` and `make demo` run `make setup` first when needed.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON_BOOTSTRAP ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MSG_BUILD := msg/build
SETUP_STAMP := $(VENV)/.setup-done
PYTEST_ARGS ?=
DEMO_ARGS ?=

# Everything the environment depends on: a change to any of these re-runs the installs.
SETUP_INPUTS := requirements.txt constraints.txt model/pyproject.toml training/pyproject.toml setup.py setup.cfg \
	msg/CMakeLists.txt msg/package.xml $(wildcard msg/msg/*.msg) \
	model/setup.py $(wildcard model/distillnerf/csrc/*.cpp)

ROS_ENV := ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST RCUTILS_LOGGING_USE_STDOUT=1 PYTHONUNBUFFERED=1

.PHONY: setup test demo bench gpu-check clean help
help:
	@echo "make setup   create .venv and install everything (pinned), build msg/"
	@echo "make test    run the whole test suite (runs setup first when needed)"
	@echo "make demo    run the demo on the embedded synthetic world (DEMO_ARGS='...' for options)"
	@echo "make bench   print the model benchmark"
	@echo "make gpu-check  CUDA tests, CUDA benches (fp32, fp16) and 50 AMP training steps -> gpu_check.json"

setup: $(SETUP_STAMP)

$(SETUP_STAMP): $(SETUP_INPUTS)
	@command -v $(PYTHON_BOOTSTRAP) >/dev/null || { echo "make setup: $(PYTHON_BOOTSTRAP) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e model -e training -e .
	rm -rf $(MSG_BUILD)
	source $(VENV)/bin/activate && \
	cmake -S msg -B $(MSG_BUILD) -DCMAKE_PREFIX_PATH="$$VIRTUAL_ENV" -DCMAKE_INSTALL_PREFIX="$$VIRTUAL_ENV" \
		-DPython3_EXECUTABLE="$$VIRTUAL_ENV/bin/python" -DBUILD_TESTING=OFF >$(MSG_BUILD).log 2>&1 && \
	cmake --build $(MSG_BUILD) -j2 >>$(MSG_BUILD).log 2>&1 && cmake --install $(MSG_BUILD) >>$(MSG_BUILD).log 2>&1 \
		|| { cat $(MSG_BUILD).log; exit 1; }
	$(PY) -c "import distillnerf, distillnerf_train, distillnerf_ros, rclpy, distillnerf_msgs.msg"
	touch $@
	@echo "setup done: $(VENV)"

# pytest exits 5 when it collected nothing: that is a failure here too.
test: setup
	$(ROS_ENV) $(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(ROS_ENV) $(VENV)/bin/distillnerf demo $(DEMO_ARGS)

bench: setup
	$(VENV)/bin/distillnerf bench

# Needs a CUDA GPU (exits 2 with one line without one); under 8 minutes on one H100/H200.
gpu-check: setup
	$(ROS_ENV) $(PY) -m distillnerf_train.gpu_check --report gpu_check.json

clean:
	rm -rf $(VENV) $(MSG_BUILD) $(MSG_BUILD).log demo_output
