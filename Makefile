# Two entry points: `make demo` and `make test`. Both create/reuse .venv and fetch the assets.
PY      ?= python3.11
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test venv assets clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (set PY=...)"; exit 1; }
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[convert,dev,tasks]"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

assets: venv
	$(PYTHON) tools/fetch_assets.py

# The main job end to end on real data: convert ResNet-8 with a prototype head for Fashion-MNIST,
# train its int8 weights on-device style with Sign-m-SPSA, export, and print the result.
demo: assets
	$(PYTHON) tools/train.py --out=out/demo
	$(PYTHON) tools/evaluate.py --model=out/demo/trained.tflite

test: assets
	$(PYTHON) -m pytest -q tests

clean:
	rm -rf out .pytest_cache
