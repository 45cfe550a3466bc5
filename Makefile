# clrp-widgets: `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_SRC := $(wildcard js/*.js js/lib/*.js) package.json js/package.json
BUNDLE := clrp_widgets/static/heatmap.js
PORT ?= 8888
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup test lint typecheck jstest pytest demo demo-html bench chromium clean

## setup: venv + pinned torch + the package (editable, which runs the npm build) + test tools
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -m pip install -q -c constraints.txt --no-deps lxt==2.1  # its import needs only [test]'s
	touch $(STAMP)

$(BUNDLE): $(JS_SRC) | $(STAMP)
	npm install --no-audit --no-fund --loglevel=error
	npm run build

setup: $(STAMP) $(BUNDLE)

## chromium for the real-browser tests (Debian's package; never `playwright install`)
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy clrp_widgets/engine clrp_widgets/results clrp_widgets/widgets

jstest: setup
	node --test js/tests/

## two workers, one test file each at a time (tests/conftest.py gives each one torch thread)
pytest: setup chromium
	$(BIN)/pytest -n 2 --dist loadfile --durations=25

test: lint typecheck jstest pytest

## demo: JupyterLab on the quickstart notebook (demo-html: the headless variant)
demo: setup
	$(BIN)/jupyter lab notebooks/quickstart.ipynb --port=$(PORT) $(LAB_ARGS)

demo-html: setup
	mkdir -p build
	$(PY) -m clrp_widgets.models.demo_grid --out build/demo/grid.png
	$(PY) -m clrp_widgets.export notebooks/quickstart.ipynb -o build/quickstart.html

bench: setup
	$(PY) bench/engine.py
	$(PY) bench/widgets.py
	$(PY) bench/scale.py

clean:
	rm -rf build dist clrp_widgets/static node_modules
