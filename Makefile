# Recast 4D — set-up, tests, demo, packaging.
# `make test` and `make demo` create .venv on first use and install what they need.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# Blender 5.3 (native Gaussian splats) as the bpy 5.3.0 wheel on Python 3.13, beside the main .venv:
# no torch there (addon/ never imports it); its tests talk to a backend run from .venv, as in real use.
# pyenv's 3.13 first (its shim on PATH fails unless 3.13 is the selected version), then PATH; each is tried.
ifndef PYTHON313
PYTHON313 := $(shell for p in $$(ls -d "$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)"/versions/3.13*/bin/python3.13 \
               2>/dev/null) $$(command -v python3.13); do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' \
               2>/dev/null && { echo "$$p"; break; }; done)
endif
VENV53    := .venv-blender53
PY53      := $(VENV53)/bin/python
BLENDER53_PACKAGES := bpy==5.3.0 "numpy>=1.26" "msgpack>=1.0.7" "pyzmq>=26.0" "pytest>=8.0"
STAMP53   := $(VENV53)/.installed-$(shell echo '$(BLENDER53_PACKAGES)' | sha1sum | cut -c1-12)
# What runs on 5.3 as well (the rest of tests/addon runs once, on 5.0.1): the native-splat import,
# render and bad-input tests, and the add-on against a real backend process.
BLENDER53_TESTS ?= tests/blender53 tests/addon/test_addon_e2e.py

.PHONY: venv venv-blender53 test test-blender53 test-fast lint demo addon bench clean gpu-wheels gpu-check

ENGINE ?= classical

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU torch from the machine's wheel cache; never a CUDA build in CI.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[backend,test,dev,cluster,farm]'
	touch $(STAMP)

venv-blender53: $(STAMP53)

$(STAMP53):
	@test -n "$(PYTHON313)" || { echo "Blender 5.3 needs Python 3.13 (bpy 5.3 wheels are cp313 only): install it" \
	  "(e.g. pyenv install 3.13) or pass PYTHON313=/path/to/python3.13" >&2; exit 1; }
	test -x $(PY53) || $(PYTHON313) -m venv $(VENV53)
	$(PY53) -m pip install --quiet --upgrade pip
	$(PY53) -m pip install --quiet $(BLENDER53_PACKAGES)
	touch $(STAMP53)

test: venv venv-blender53
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-blender53

# The add-on tests that matter on Blender 5.3, in .venv-blender53, the backend from .venv.
test-blender53: venv venv-blender53
	RECAST4D_BACKEND_PYTHON=$(abspath $(PY)) $(PY53) -m pytest -q -m "not slow" $(BLENDER53_TESTS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow and not blender" $(PYTEST_ARGS)

# The main job end to end on the embedded default (no weights, no GPU): a Blender scene, the backend
# server, the add-on driven headless, a Cycles render of the result and a quality report in demo_out/.
demo: venv venv-blender53
	$(PY) bench/demo.py --out demo_out --blender53-python $(abspath $(PY53)) --engine $(ENGINE) $(if $(MODELS),--models $(MODELS)) $(DEMO_ARGS)

# The installable Blender extension: dist/recast4d-<version>.zip (add-on + protocol + pyzmq/msgpack wheels).
addon: venv
	$(PY) -m backend.addon_build --out dist

# Every benchmark; each prints one JSON line last (GPU-only ones say they were skipped on CPU).
bench: venv
	for b in bench/*.py; do case $$b in bench/demo*) continue;; esac; echo "== $$b"; $(PY) $$b || exit 1; done

# The prepared GPU check (bench/gpu_check.py, docs/gpu.md). Beforehand, where a registry is reachable:
# `make gpu-wheels` puts the cp312 manylinux wheels the GPU machine lacks into .whl/ (git-ignored, ~14 MB);
# on the GPU machine (its own python3, no registry) `make gpu-check` installs them with --no-index into
# GPU_SITE and runs every check (<= 8 min on one H100/H200; prints one JSON summary, also to $$OUT).
GPU_PYTHON ?= python3
GPU_SITE   ?= /tmp/recast4d-gpu-site
GPU_WHEELS ?= diffusers==0.42.1 gsplat==1.5.3 peft==0.21.2
GPU_PIP    ?= $(if $(wildcard $(PY)),$(PY),python3) -m pip
WHEEL_TAGS := --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
              --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
              --platform manylinux1_x86_64

gpu-wheels:
	mkdir -p .whl
	$(GPU_PIP) download --quiet --no-deps --only-binary=:all: $(WHEEL_TAGS) -d .whl $(GPU_WHEELS)
	@du -sm .whl | awk '{ if ($$1 > 48) { print "error: .whl is " $$1 " MiB; the GPU copy limit is 64 MiB in all"; exit 1 } \
	                     else print ".whl: " $$1 " MiB" }'

gpu-check:
	@if ls .whl/*.whl >/dev/null 2>&1; then \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
	    --target $(GPU_SITE) .whl/*.whl || exit 1; fi
	PYTHONPATH=$(GPU_SITE):$(CURDIR) $(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf dist build demo_out .pytest_cache
