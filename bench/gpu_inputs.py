"""The GPU proof's inputs (bench/gpu.py prepare, here on the CPU): the corpus, the CPU fp32
reference embeddings, and the sentence-transformers folder staged without its weights, which
rebuild_st_model() restores bit-exact from model.onnx's initializers on the GPU machine.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from corpus import read_corpus, write_corpus
from gpu_env import _ort, log

# ---------------------------------------------------------------- the torch baseline's weights


def tensor_sha256(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def weights_from_onnx(onnx_path: Path) -> dict[str, np.ndarray]:
    """The BERT state dict inside the exported graph (keys as in the model's safetensors).

    torch.onnx.export keeps named parameters under the wrapper's "transformer." prefix and stores
    each Linear weight transposed as an anonymous MatMul input; the Add after that MatMul names
    the layer through its bias.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: t for t in graph.initializer}
    prefix = "transformer."
    out = {
        n[len(prefix) :]: numpy_helper.to_array(t) for n, t in inits.items() if n.startswith(prefix)
    }
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if (
            node.op_type != "MatMul"
            or node.input[1] not in inits
            or node.input[1].startswith(prefix)
        ):
            continue
        biases = [
            i
            for c in consumers.get(node.output[0], [])
            if c.op_type == "Add"
            for i in c.input
            if i.startswith(prefix) and i.endswith(".bias")
        ]
        if len(biases) != 1:
            raise ValueError(
                f"MatMul {node.name!r}: expected one bias Add after it, found {biases}"
            )
        weight = numpy_helper.to_array(inits[node.input[1]]).T
        # contiguous: safetensors writes an array's buffer as is, and .T is a column-major view
        out[biases[0][len(prefix) : -len(".bias")] + ".weight"] = np.ascontiguousarray(weight)
    return out


def stage_st_model(st_model: Path, onnx_path: Path, out: Path) -> dict[str, Any]:
    """out/st (the folder without weights), out/st_rest.safetensors (tensors the graph lacks:
    pooler, position_ids), out/st_tensors.json (sha256 of every original tensor); then rebuilds
    once to prove the rebuild is bit-exact."""
    from safetensors.numpy import load_file, save_file

    weights = st_model / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(
            f"{st_model} has no model.safetensors (the rebuild reads safetensors only)"
        )
    skip = shutil.ignore_patterns(
        "*.safetensors",
        "*.bin",
        "*.pt",
        "*.h5",
        "*.msgpack",
        "onnx",
        "openvino",
        "README.md",
        ".gitattributes",
    )
    shutil.copytree(st_model, out / "st", ignore=skip, dirs_exist_ok=True)
    original = load_file(str(weights))
    derived = weights_from_onnx(onnx_path)
    extra = sorted(set(derived) - set(original))
    if extra:
        raise SystemExit(f"graph tensors not in {weights}: {extra[:5]}")
    rest = {k: v for k, v in original.items() if k not in derived}
    save_file(rest, str(out / "st_rest.safetensors"))
    (out / "st_tensors.json").write_text(
        json.dumps({k: tensor_sha256(v) for k, v in sorted(original.items())}, indent=0)
    )
    with tempfile.TemporaryDirectory() as tmp:
        rebuild_st_model(out, onnx_path, Path(tmp) / "st")
    return {"tensors": len(original), "from_graph": len(derived), "carried": sorted(rest)}


def rebuild_st_model(inputs: Path, onnx_path: Path, dest: Path) -> Path:
    """The sentence-transformers folder with model.safetensors rebuilt from the graph + the rest."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(inputs / "st", dest, dirs_exist_ok=True)
    tensors = {**weights_from_onnx(onnx_path), **load_file(str(inputs / "st_rest.safetensors"))}
    expected = json.loads((inputs / "st_tensors.json").read_text())
    got = {k: tensor_sha256(v) for k, v in tensors.items()}
    if got != expected:
        bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise SystemExit(
            f"rebuilt torch weights differ from the original in {len(bad)} tensors: {bad[:5]}"
        )
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


# ---------------------------------------------------------------- prepare (here, on the CPU)


def fallback_sentences() -> list[str]:
    return [
        "A man is playing a guitar.",
        "Someone plays an instrument.",
        "The cat sits on the mat.",
        "Stocks fell sharply on Monday after the announcement.",
        "A woman is slicing an onion.",
        "The quick brown fox jumps over the lazy dog. " * 30,
        "",
        "Ünïcödé text, emoji 🙂 and CJK 漢字.",
    ]


def prepare(
    artifact: Path,
    out: Path,
    *,
    st_model: Path | None,
    corpus: Path | None,
    texts: int,
    ref_texts: int,
    threads: int | None,
) -> None:
    from embedrt import Encoder, load_manifest

    out.mkdir(parents=True, exist_ok=True)
    if corpus:
        corpus_texts = read_corpus(corpus)[:texts]
    else:
        try:
            from corpus import build_corpus

            corpus_texts = build_corpus(texts)
        except Exception as e:  # STS-B not installed: say so, keep going
            log(f"bench corpus unavailable ({type(e).__name__}: {e}); using built-in sentences")
            corpus_texts = (fallback_sentences() * (texts // 8 + 1))[:texts]
    write_corpus(out / "corpus.jsonl", corpus_texts)
    ref_list = corpus_texts[:ref_texts]
    t = time.perf_counter()
    enc = Encoder.load(artifact, device="cpu", variant="fp32", threads=threads)
    np.save(out / "reference.npy", enc.encode(ref_list, batch_size=32))
    variant = load_manifest(artifact).variant("fp32")
    meta = {
        "artifact_variant": "fp32",
        "file": variant.file,
        "sha256": variant.sha256,
        "texts": len(ref_list),
        "batch_size": 32,
        "device": "cpu",
        "onnxruntime": _ort().__version__,
        "seconds": round(time.perf_counter() - t, 2),
    }
    if st_model:
        meta["torch_weights"] = stage_st_model(st_model, artifact / variant.file, out)
    (out / "reference.json").write_text(json.dumps(meta, indent=1))
    log(
        f"prepared {out}: {len(corpus_texts)} texts, {len(ref_list)} CPU fp32 references"
        + (f", torch weights rebuilt bit-exact from {variant.file}" if st_model else "")
    )
