# One-command set-up: every target creates .venv and installs what it needs first.
# TORCH_SPEC picks the torch build (default: the CPU build of 2.13.0); e.g.
#   make serve TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev serve sample test lint typecheck bench-train bench-augment bench-stacked bench-serve bench-serve-variants bench-peers bench-d-guided bench-three-ways bench-agreement bench-ddp docker-test docker-lb-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install $(TORCH_SPEC)
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## serve: start the API on the bundled MNIST model at http://$(HOST):$(PORT)
serve: install
	$(BIN)/gan-serve --checkpoint checkpoints/mnist --host $(HOST) --port $(PORT)

## sample: write a grid of 64 digits from the bundled model to samples.png
sample: install
	$(BIN)/gan-sample --checkpoint checkpoints/mnist --num 64 --seed 0 --out samples.png

## test: lint (ruff check and format), type-check and run the whole test suite
test: install-dev
	$(BIN)/ruff check gan training service tests bench
	$(BIN)/ruff format --check gan training service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: install-dev
	$(BIN)/ruff check gan training service tests bench
	$(BIN)/ruff format --check gan training service tests bench
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy

bench-train: install-dev
	$(BIN)/python bench/train_budget.py

## bench-augment: --augment vs not on a synthetic two-class folder (quality and mode coverage)
bench-augment: install-dev
	$(BIN)/python bench/augment_folder.py

## bench-stacked: Stacked MNIST mode coverage (1,000 modes; dcgan and slow, 15 min each)
bench-stacked: install-dev
	$(BIN)/python bench/stacked_mnist.py

## bench-agreement: does the folder feature space rank MNIST runs as the classifier does? (~10 min)
bench-agreement: install-dev
	$(BIN)/python bench/feature_agreement.py

bench-serve: install-dev
	$(BIN)/python bench/serve_load.py

## bench-ddp: training images/s on 1 and 2 processes (torch.distributed), side by side
bench-ddp: install-dev
	$(BIN)/python bench/ddp_throughput.py

## bench-d-guided: every sampling method against plain (needs a calibrated checkpoint: gan-calibrate)
bench-d-guided: install-dev
	$(BIN)/python bench/d_guided.py

## bench-three-ways: gan, vae and ebm on the same CPU budget (docs/lecture.md; ~35 minutes)
bench-three-ways: install-dev
	$(BIN)/python bench/three_ways.py --out runs/three-ways

## bench-peers: gan-serve vs BentoML, TorchServe, LitServe and Ray Serve on the same checkpoint (installs them first)
bench-peers: install-dev
	$(BIN)/python bench/serve_load.py --peers bentoml,torchserve,litserve,rayserve

## bench-serve-variants: HTTP stacks (h11/httptools, asyncio/uvloop), 2 workers and the onnxruntime engine, side by side
bench-serve-variants: install-dev
	$(BIN)/python bench/serve_variants.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

## docker-test: build the image, compose up, call the API, train through compose, down -v
docker-test:
	bash scripts/docker-test.sh

## docker-lb-test: 2 replicas behind HAProxy (compose profile lb), one killed and restarted under load
docker-lb-test: install-dev
	GAN_DOCKER_LB_TEST=1 $(BIN)/pytest -q -s tests/deploy/test_docker_lb.py
