#!/usr/bin/env bash
# Bring the GPU proof (bench/gpu.py) to the lent GPU machine, whose image has torch and a CPU-only
# onnxruntime and no network, through device calls that carry at most 64 MiB each (bench/GPU.md).
#
#   here:   bench/stage_gpu.sh            one payload (onnxruntime-gpu unpacked, the artifact files
#                                         the proof loads, inputs from `gpu.py prepare`), checked by a
#                                         CPU dry run, xz-compressed, cut into .gpu/p1 .. .gpu/pN
#   there:  bash bench/stage_gpu.sh receive [gpu.py run options]
#                                         one call per part, carry [".gpu/pK"]; the call that brings
#                                         the last part joins, checks, unpacks and runs the proof
#
#   here:   bench/stage_gpu.sh split      re-cut the parts for the working tree's current size (seconds);
#                                         run it right before the device calls
#
# .gpu/ is ignored by git (.gitignore). Knobs: ORT_GPU_VERSION, SAFETY_KIB, ARTIFACT, ST_MODEL, FILES, TEXTS,
# REF_TEXTS, CHECK=0 (skip the dry run on the staged payload), PY (python with embedrt installed).
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_GPU_VERSION=${ORT_GPU_VERSION:-1.31.1}
SAFETY_KIB=${SAFETY_KIB:-512}   # kept free in every call beside a part and the working tree
ARTIFACT=${ARTIFACT:-artifacts/all-MiniLM-L6-v2}
TEXTS=${TEXTS:-3000}            # the bench corpus (bench/corpus.py), as bench/worker.py uses it
REF_TEXTS=${REF_TEXTS:-1000}    # CPU fp32 reference embeddings for the first REF_TEXTS texts
# model.onnx: fp32 on CUDA, TensorRT's graph, and the torch baseline's weights; model_fp16.onnx: fp16
# on CUDA. Adding model_opt.onnx (the fused fp32 graph, 90 MB) costs 2 more device calls.
FILES=${FILES:-embedrt.json tokenizer.json model.onnx model_fp16.onnx}
LIMIT=$((64 * 1024 * 1024))

stage() {
  local py=${PY:-.venv/bin/python}
  git check-ignore -q .gpu/p1 || { echo "stage_gpu: .gpu/ is not ignored by git; refusing to write it" >&2; exit 1; }
  [ -f "$ARTIFACT/embedrt.json" ] || { echo "stage_gpu: no artifact at $ARTIFACT (make run)" >&2; exit 1; }
  for f in $FILES; do
    [ -f "$ARTIFACT/$f" ] || { echo "stage_gpu: $ARTIFACT/$f is missing (make run exports it)" >&2; exit 1; }
  done
  # The torch baseline: the sentence-transformers folder the artifact was exported from (its weights
  # must equal the graph's; prepare stops otherwise).
  local st_model=${ST_MODEL:-}
  [ -n "$st_model" ] || st_model=$($py -c 'from embedrt.export.source import resolve_source; print(resolve_source("all-MiniLM-L6-v2")[1])')

  mkdir -p .gpu/dl
  local whl
  whl=$(ls .gpu/dl/onnxruntime_gpu-"$ORT_GPU_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then  # the same download as ../shared/gpu/stage-ort-gpu.sh; kept in .gpu/dl for reruns
    $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      -d .gpu/dl "onnxruntime-gpu==$ORT_GPU_VERSION"
    whl=$(ls .gpu/dl/onnxruntime_gpu-"$ORT_GPU_VERSION"-*.whl | head -1)
  fi
  echo "stage_gpu: wheel $(basename "$whl") ($(stat -c %s "$whl") bytes, sha256 $(sha256sum "$whl" | cut -c1-16)...)"

  rm -rf .gpu/payload .gpu/payload.tar.xz .gpu/p[0-9]*
  mkdir -p .gpu/payload/site .gpu/payload/artifact
  # A wheel is a zip; unpacked it is what `pip install --target` writes (onnxruntime has no scripts
  # the proof needs), and the whole payload's sha256 is checked there.
  (cd .gpu/payload/site && unzip -q "$OLDPWD/$whl")
  # The loader hashes only the files it reads, so an artifact without model_opt.onnx loads.
  for f in $FILES; do  # a graph's token tables (<file>_data, format 2) travel with it
    cp "$ARTIFACT/$f" .gpu/payload/artifact/
    if [ -f "$ARTIFACT/${f}_data" ]; then cp "$ARTIFACT/${f}_data" .gpu/payload/artifact/; fi
  done
  $py bench/gpu.py prepare --artifact .gpu/payload/artifact --st-model "$st_model" \
    --texts "$TEXTS" --ref-texts "$REF_TEXTS" --threads 2 --out .gpu/payload/inputs
  if [ "${CHECK:-1}" = 1 ]; then  # what the GPU gets, on the CPU: artifact subset, inputs, torch rebuild
    HF_HUB_OFFLINE=1 OUT=.gpu/check $py bench/gpu.py dry-run --artifact .gpu/payload/artifact \
      --inputs .gpu/payload/inputs --work .gpu/check-work | tail -25
    rm -rf .gpu/check-work
  fi

  echo "stage_gpu: compressing $(du -sh .gpu/payload | cut -f1) (xz -6: ~10 minutes on 2 shared cores)"
  tar -C .gpu/payload -cf - . | xz -T2 -6 > .gpu/payload.tar.xz
  (cd .gpu && sha256sum payload.tar.xz > SHA256)
  rm -rf .gpu/payload
  split_parts
}

# As few parts as fit: each part + the working tree (which travels with every call) + a safety
# margin under 64 MiB. Rerun (`bench/stage_gpu.sh split`, seconds) right before the device calls:
# the tree grows as others add files.
split_parts() {
  [ -f .gpu/payload.tar.xz ] || { echo "stage_gpu: no .gpu/payload.tar.xz: run bench/stage_gpu.sh" >&2; exit 1; }
  local tree total budget n size
  tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
  total=$(stat -c %s .gpu/payload.tar.xz)
  budget=$((LIMIT - tree - SAFETY_KIB * 1024 - 4096))  # 4 KiB: the PARTS and SHA256 files
  n=$(((total + budget - 1) / budget))
  size=$(((total + n - 1) / n))
  rm -rf .gpu/p[0-9]* .gpu/part.*
  split -b "$size" -d -a 2 .gpu/payload.tar.xz .gpu/part.
  local i=0 p
  for p in .gpu/part.*; do
    i=$((i + 1)); mkdir ".gpu/p$i"; mv "$p" ".gpu/p$i/"
    cp .gpu/SHA256 ".gpu/p$i/"; echo "$n" > ".gpu/p$i/PARTS"
  done
  awk -v t="$total" -v tr="$tree" -v n="$n" -v s="$size" 'BEGIN { printf "stage_gpu: payload %.1f MiB in %d parts of <= %.2f MiB; the working tree adds %.2f MiB per call: %.2f MiB of 64\n", t / 1048576, n, s / 1048576, tr / 1048576, (s + tr) / 1048576 }'
  echo "stage_gpu: $n device calls, back to back (bench/GPU.md):"
  for i in $(seq 1 "$n"); do
    echo "  run(command=\"bash bench/stage_gpu.sh receive\", carry=[\".gpu/p$i\"], timeout_s=$([ "$i" = "$n" ] && echo 540 || echo 120))"
  done
}

receive() {
  local dest=${EMBEDRT_GPU_DIR:-/tmp/embedrt-gpu}
  local first=0
  [ -d "$dest" ] || first=1
  mkdir -p "$dest/parts"
  for d in .gpu/p[0-9]*/; do
    [ -d "$d" ] || continue
    cp "$d"part.* "$dest/parts/" && cp "$d"SHA256 "$d"PARTS "$dest/"
  done
  if [ "$first" = 1 ]; then  # first call on a fresh machine: what the proof will meet there
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c 'import sys, numpy, tokenizers; print(sys.executable, sys.version.split()[0], "numpy", numpy.__version__, "tokenizers", tokenizers.__version__)' || true
    echo "nvinfer: $(ldconfig -p | grep -c nvinfer || true) entries in ldconfig; $(python3 -c 'import tensorrt; print("tensorrt", tensorrt.__version__)' 2>&1 | tail -1)"
    python3 -c 'import glob, site; print("nvidia libs:", sorted(glob.glob(site.getsitepackages()[0] + "/nvidia/*/lib"))[:12])' || true
    echo "xz: $(xz --version 2>/dev/null | head -1 || echo missing)"
  fi
  local want have
  want=$(cat "$dest/PARTS" 2>/dev/null || echo "?")
  have=$(ls "$dest/parts" | wc -l)
  echo "stage_gpu receive: $have of $want parts in $dest/parts"
  ls -l "$dest/parts"
  [ "$have" = "$want" ] || exit 0

  if [ ! -f "$dest/payload/.unpacked" ]; then
    local t0=$SECONDS
    cat "$dest"/parts/part.* > "$dest/payload.tar.xz"
    (cd "$dest" && sha256sum -c SHA256)
    rm -rf "$dest/payload" && mkdir -p "$dest/payload"
    if command -v xz >/dev/null; then
      xz -dc -T0 "$dest/payload.tar.xz" | tar -x -C "$dest/payload"
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
        "$dest/payload.tar.xz" | tar -x -C "$dest/payload"
    fi
    rm -f "$dest/payload.tar.xz"
    touch "$dest/payload/.unpacked"
    echo "stage_gpu receive: joined, sha256 checked, unpacked in $((SECONDS - t0)) s"
  fi
  export PYTHONPATH="$dest/payload/site${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
  export OUT=${OUT:-$dest/out}
  mkdir -p "$OUT"
  set -o pipefail
  python3 bench/gpu.py run --artifact "$dest/payload/artifact" --inputs "$dest/payload/inputs" \
    --work "$dest/work" "$@" 2>&1 | tee "$OUT/gpu_run.log"
}

case "${1:-stage}" in
  stage) stage ;;
  split) split_parts ;;
  receive) shift; receive "$@" ;;
  *) echo "usage: $0 [stage] | split | receive [gpu.py run options]" >&2; exit 2 ;;
esac
