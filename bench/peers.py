"""The peers embedrt is measured against, run by bench/worker.py under the peers' own venv.

    make bench-peers-venv        # installs .venv-peers (bench/peers-requirements.txt) and prepares
    .venv-peers/bin/python bench/peers.py prepare --st-model DIR    # the same step by hand

- st-onnx: sentence-transformers with backend="onnx" (its optimum export, onnx/model.onnx).
- st-onnx-int8: the same with sentence-transformers' dynamic int8 file for AVX-512 VNNI
  (export_dynamic_quantized_onnx_model(model, "avx512_vnni", ...) writes
  onnx/model_qint8_avx512_vnni.onnx).
- fastembed: TextEmbedding with a custom model (mean pooling, normalization) read from a local
  folder holding that same plain transformer-only export (output last_hidden_state) and the
  model's tokenizer files, truncating at the model's max_seq_length as sentence-transformers does.

sentence-transformers exports ONNX on first load when the folder has none. `prepare` does that
once, outside the timed part, into a copy of the model folder under the cache (default
.bench-cache/peers, or $EMBEDRT_BENCH_CACHE/peers), so the worker's cold start measures loading,
not exporting. Loading a peer never exports: an unprepared model is an error naming the command.

Threads: args.threads for every peer (sentence-transformers: an onnxruntime SessionOptions with
intra_op_num_threads, passed through model_kwargs, plus torch.set_num_threads; fastembed:
threads=, which it sets as both intra- and inter-op threads). --spinning (off, run, on: as
embedrt's) reaches the sentence-transformers peers only; fastembed has no such knob (ONNX
Runtime's default: on). Each peer batches as its users get it: sentence-transformers sorts by character length, fastembed embeds in
input order, so on a long-tail corpus fastembed pads far more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

EncodeFn = Callable[[list[str], int], np.ndarray]

ROOT = Path(__file__).resolve().parent.parent
INT8_FILE = "model_qint8_avx512_vnni.onnx"
# fastembed's registry name only: its files come from a local folder, never from a hub.
FASTEMBED_NAME = "embedrt-bench/peer-fastembed"
# Tokenizer files fastembed reads (tokenizer.json and tokenizer_config.json required).
FASTEMBED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
    "vocab.txt",
)


def cache_root() -> Path:
    base = os.environ.get("EMBEDRT_BENCH_CACHE")
    return (Path(base) if base else ROOT / ".bench-cache") / "peers"


def _index_path() -> Path:
    return cache_root() / "index.json"


def _weights(st_model: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (st_model / name).is_file():
            return st_model / name
    raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {st_model}")


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def prepared_dir(st_model: str | Path) -> Path:
    """The prepared copy of st_model (a cheap lookup: no hashing inside the timed part)."""
    src = Path(st_model).resolve()
    index = json.loads(_index_path().read_text()) if _index_path().is_file() else {}
    entry = index.get(str(src))
    hint = f"run: .venv-peers/bin/python bench/peers.py prepare --st-model {st_model}"
    if entry is None:
        raise FileNotFoundError(f"peers not prepared for {src}; {hint}")
    if entry["stamp"] != _stamp(_weights(src)):
        raise FileNotFoundError(f"peers' copy of {src} is stale (its weights changed); {hint}")
    out = cache_root() / entry["dir"]
    if not all(
        (out / f).is_file()
        for f in ("st/onnx/model.onnx", f"st/onnx/{INT8_FILE}", "fastembed/onnx/model.onnx")
    ):
        raise FileNotFoundError(f"{out} lacks its ONNX files; {hint}")
    return out


def prepare(st_model: str | Path, force: bool = False) -> Path:
    """Copy st_model under the cache (<dir>/st), export its ONNX and int8 files there with
    sentence-transformers, and lay out <dir>/fastembed. Idempotent; keyed by the weights' sha256.
    Two sibling folders, not one inside the other: optimum globs **/*.onnx and warns about two
    model.onnx files."""
    src = Path(st_model).resolve()
    weights = _weights(src)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{src.name}-{digest[:12]}"
    if force and out.exists():
        shutil.rmtree(out)
    if not (out / "fastembed" / "onnx" / "model.onnx").is_file():
        tmp = root / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp / "st", ignore=shutil.ignore_patterns("onnx", "openvino"))
        _export_st_onnx(tmp / "st")
        _layout_fastembed(tmp / "st", tmp / "fastembed")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    index = json.loads(_index_path().read_text()) if _index_path().is_file() else {}
    index[str(src)] = {"dir": out.name, "sha256": digest, "stamp": _stamp(weights)}
    tmp_index = _index_path().with_suffix(f".tmp-{os.getpid()}")
    tmp_index.write_text(json.dumps(index, indent=1) + "\n")
    os.replace(tmp_index, _index_path())
    return out


def _export_st_onnx(folder: Path) -> None:
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    # No onnx/ in the folder: sentence-transformers exports through optimum (offline, from the
    # local weights); saving the transformer module writes <folder>/onnx/model.onnx.
    model = SentenceTransformer(str(folder), backend="onnx", device="cpu")
    model[0].auto_model.save_pretrained(str(folder))
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(folder))
    for name in ("model.onnx", INT8_FILE):
        if not (folder / "onnx" / name).is_file():
            raise RuntimeError(f"sentence-transformers did not write onnx/{name} in {folder}")


def _max_seq_length(folder: Path) -> int:
    # Both layouts: sentence_bert_config.json (before 5.7) or tokenizer_config.json (5.7+ save).
    for name in ("sentence_bert_config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text()).get("max_seq_length")
            if value:
                return int(value)
    raise ValueError(f"no max_seq_length in {folder}")


def _layout_fastembed(folder: Path, fe: Path) -> None:
    """fastembed's folder: the ST folder's plain export (a hard link: the same file) and the
    tokenizer files, with model_max_length set to sentence-transformers' max_seq_length (MiniLM:
    256, where its tokenizer_config.json says 512), so both peers truncate where embedrt does."""
    (fe / "onnx").mkdir(parents=True)
    try:
        os.link(folder / "onnx" / "model.onnx", fe / "onnx" / "model.onnx")
    except OSError:
        shutil.copy2(folder / "onnx" / "model.onnx", fe / "onnx" / "model.onnx")
    for name in FASTEMBED_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, fe / name)
    tok_cfg = json.loads((fe / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = _max_seq_length(folder)
    tok_cfg.pop("max_length", None)
    (fe / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1) + "\n")


def _ort_provider(device: str) -> str:
    import onnxruntime as ort

    want = {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
    }.get(device)
    if want is None or want not in ort.get_available_providers():
        raise ValueError(
            f"device {device!r} not available to the peers; ONNX Runtime offers "
            f"{ort.get_available_providers()}"
        )
    return want


def _st_onnx(file_name: str) -> Callable[[argparse.Namespace], EncodeFn]:
    def load(args: argparse.Namespace) -> EncodeFn:
        import onnxruntime as ort
        import torch
        from sentence_transformers import SentenceTransformer

        folder = prepared_dir(args.st_model) / "st"
        torch.set_num_threads(args.threads)  # for completeness: inference runs in ONNX Runtime
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        spinning = getattr(args, "spinning", "on")  # as embedrt's SessionOptions.spinning
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "0" if spinning == "off" else "1"
        )
        if spinning == "run":
            so.add_session_config_entry("session.force_spinning_stop", "1")
        model = SentenceTransformer(
            str(folder),
            backend="onnx",
            device="cpu",
            model_kwargs={
                "file_name": f"onnx/{file_name}",
                "provider": _ort_provider(args.device),
                "session_options": so,
                "export": False,
            },
        )

        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            return model.encode(
                texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            ).astype(np.float32, copy=False)

        return encode

    return load


def fastembed_peer(args: argparse.Namespace) -> EncodeFn:
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    folder = prepared_dir(args.st_model) / "fastembed"
    if FASTEMBED_NAME not in {m["model"] for m in TextEmbedding.list_supported_models()}:
        TextEmbedding.add_custom_model(
            model=FASTEMBED_NAME,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf=FASTEMBED_NAME),  # never fetched: specific_model_path wins
            dim=384,
            model_file="onnx/model.onnx",
        )
    model = TextEmbedding(
        FASTEMBED_NAME,
        threads=args.threads,
        specific_model_path=str(folder),
        local_files_only=True,
        providers=[_ort_provider(args.device)],
    )

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        vecs = list(model.embed(texts, batch_size=batch_size))
        if not vecs:
            return np.zeros((0, 384), np.float32)
        return np.stack(vecs).astype(np.float32, copy=False)

    return encode


PEERS: dict[str, Callable[[argparse.Namespace], EncodeFn]] = {
    "st-onnx": _st_onnx("model.onnx"),
    "st-onnx-int8": _st_onnx(INT8_FILE),
    "fastembed": fastembed_peer,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="export the peers' ONNX files once (outside the timed part)")
    p.add_argument("--st-model", required=True, help="sentence-transformers model folder")
    p.add_argument("--force", action="store_true", help="re-export even when prepared")
    args = ap.parse_args()
    out = prepare(args.st_model, force=args.force)
    print(f"peers prepared: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
