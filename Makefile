# Recast 4D — set-up, tests, demo, packaging.
# `make test` and `make demo` create .venv on first use and install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv test test-fast lint demo addon bench clean

ENGINE ?= classical

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch from the machine's wheel cache; never a CUDA build in CI.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[backend,test,dev,cluster,farm]'
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not blender" $(PYTEST_ARGS)

# The main job end to end on the embedded default (no weights, no GPU): a Blender scene, the backend
# server, the add-on driven headless, a Cycles render of the result and a quality report in demo_out/.
demo: venv
	$(PY) bench/demo.py --out demo_out --engine $(ENGINE) $(if $(MODELS),--models $(MODELS)) $(DEMO_ARGS)

# The installable Blender extension: dist/recast4d-<version>.zip (add-on + protocol + pyzmq/msgpack wheels).
addon: venv
	$(PY) -m backend.addon_build --out dist

# Every benchmark; each prints one JSON line last (GPU-only ones say they were skipped on CPU).
bench: venv
	for b in bench/*.py; do case $$b in bench/demo*) continue;; esac; echo "== $$b"; $(PY) $$b || exit 1; done

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf dist build demo_out .pytest_cache
