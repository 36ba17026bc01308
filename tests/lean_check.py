"""Run in a venv holding only embedrt[cpu]: the lean runtime installs, imports and encodes.

    python tests/lean_check.py ARTIFACT_DIR
Exits non-zero when torch or another heavy package is importable or gets imported.
"""

import importlib.util
import sys

HEAVY = ("torch", "transformers", "onnx", "sentence_transformers", "optimum")

installed = [m for m in HEAVY if importlib.util.find_spec(m) is not None]
if installed:
    sys.exit(f"lean venv has heavy packages installed: {installed}")

import numpy as np  # noqa: E402

# Every subpackage is in the wheel and imports without its extra (only using it names one).
import embedrt.jobs  # noqa: E402, F401
import embedrt.ray  # noqa: E402, F401
import embedrt.serve  # noqa: E402, F401
from embedrt import Encoder  # noqa: E402

enc = Encoder.load(sys.argv[1], device="cpu")
vecs = enc.encode(["A man is playing a guitar.", "Someone is playing an instrument.", ""])
norms = np.linalg.norm(vecs, axis=1)
if vecs.shape != (3, enc.dim) or not np.allclose(norms, 1.0, atol=1e-5):
    sys.exit(f"bad output: shape {vecs.shape}, norms {norms}")
sim = float(vecs[0] @ vecs[1])
if not 0.5 < sim < 0.9:
    sys.exit(f"related sentences score {sim:.3f}, expected 0.5..0.9 for all-MiniLM-L6-v2")
loaded = [m for m in sys.modules if m.split(".")[0] in HEAVY]
if loaded:
    sys.exit(f"heavy modules imported: {loaded}")
print(
    f"lean runtime ok: {vecs.shape}, cos(related) {sim:.3f}, providers {enc.info.active_providers}"
)
