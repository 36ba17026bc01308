"""Check each peer against embedrt's fp32 artifact on a few real sentences, before timing them.

    .venv-peers/bin/python bench/peers_check.py --artifact artifacts/all-MiniLM-L6-v2 \
        --st-model DIR [--ref-python .venv/bin/python]

Runs under the peers' venv; embedrt's reference vectors come from the main venv (--ref-python),
so the peers' venv needs no embedrt. Every peer must return float32 [n, 384] unit vectors; fp32
peers must reach cosine >= 0.999 with embedrt fp32 on every text; the int8 file's figure is
reported (its dynamic quantization is not held to the fp32 bar). Exit 1 on a failed check.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from peers import PEERS  # noqa: E402

LONG = " ".join(
    [
        "The committee met on Tuesday to review the budget proposal for the next fiscal year.",
        "Several members raised concerns about the cost of the new transit line.",
        "A man is playing a guitar on a street corner while people walk past.",
        "The central bank left interest rates unchanged, citing uncertain inflation data.",
    ]
    * 8
)  # ~450 tokens: past max_seq_length (256), so truncation must agree too

TEXTS = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "A woman is slicing an onion.",
    "The stock market fell sharply on Monday after the earnings reports.",
    "Three dogs are running through the snow.",
    "How do I reset my password if I no longer have access to my email?",
    "Obama signs the bill into law.",
    "x",
    LONG,
]
FP32_MIN_COSINE = 0.999

REF_CODE = """
import json, sys
import numpy as np
from embedrt import Encoder
texts = json.load(open(sys.argv[2]))
enc = Encoder.load(sys.argv[1], device="cpu", variant="fp32", threads=int(sys.argv[4]))
np.save(sys.argv[3], enc.encode(texts, batch_size=4))
"""


def reference(ref_python: str, artifact: str, texts: list[str], threads: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "texts.json", Path(tmp) / "ref.npy"
        src.write_text(json.dumps(texts))
        subprocess.run(
            [ref_python, "-c", REF_CODE, artifact, str(src), str(out), str(threads)], check=True
        )
        return np.load(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--st-model", required=True)
    ap.add_argument("--ref-python", default=".venv/bin/python")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spinning", default="on")
    args = ap.parse_args()

    ref = reference(args.ref_python, args.artifact, TEXTS, args.threads)
    print(
        f"embedrt fp32 reference: {ref.shape} {ref.dtype}, {len(TEXTS)} texts "
        f"(last one {len(LONG.split())} words, past max_seq_length)"
    )
    failed = []
    for name, load in PEERS.items():
        vecs = load(args)(TEXTS, args.batch_size)
        alone = load(args)([TEXTS[0]], 1)  # a fresh load: the same text alone in its batch
        norms = np.linalg.norm(vecs, axis=1)
        cos = np.sum(vecs * ref, axis=1) / (norms * np.linalg.norm(ref, axis=1))
        alone_cos = float(alone[0] @ vecs[0] / (np.linalg.norm(alone[0]) * norms[0]))
        ok_shape = vecs.dtype == np.float32 and vecs.shape == ref.shape
        ok_norm = bool(np.all(np.abs(norms - 1) < 1e-4))
        is_fp32 = "int8" not in name
        ok_cos = bool(cos.min() >= FP32_MIN_COSINE) if is_fp32 else True
        verdict = "ok" if ok_shape and ok_norm and ok_cos else "FAIL"
        print(
            f"{name:13s} {verdict:4s} shape {vecs.shape} {vecs.dtype}  norm {norms.min():.6f}-"
            f"{norms.max():.6f}  cosine vs embedrt fp32: min {cos.min():.7f}"
            f" mean {cos.mean():.7f}"
            f"  (long text {cos[-1]:.7f}){'' if is_fp32 else ' [int8: reported, no bar]'}"
            f"  alone-vs-batched {alone_cos:.7f}"
        )
        if verdict != "ok":
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
