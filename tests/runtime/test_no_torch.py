"""The runtime never imports the heavy stack, even where it is installed (as here)."""

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "onnx", "sentence_transformers", "optimum")

SCRIPT = """
import json, sys
from embedrt import Encoder
enc = Encoder.load(sys.argv[1], device="cpu")
vec = enc.encode(["the man plays guitar", ""])
heavy = [m for m in sys.modules if m.split(".")[0] in {heavy!r}]
print(json.dumps({{"shape": list(vec.shape), "heavy": heavy}}))
"""


def test_import_and_encode_leave_heavy_modules_out(tiny_artifact):
    import importlib.util

    assert importlib.util.find_spec("torch") is not None  # installed, so the check means something
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=HEAVY), str(tiny_artifact)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(out.stdout)
    assert result["shape"] == [2, 16]
    assert result["heavy"] == []
