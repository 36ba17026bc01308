"""embedrt.export: sentence-transformers folder -> verified ONNX artifact (extra 'export').

    from embedrt.export import export_model
    export_model("path/to/st-model", "artifacts/my-model")

Needs torch, transformers, sentence-transformers and onnx: pip install 'embedrt[export]'.
"""

import importlib.util

from embedrt.errors import missing_extra

for _module in ("torch", "transformers", "sentence_transformers", "onnx"):
    if importlib.util.find_spec(_module) is None:
        raise missing_extra(_module, "export")

from .artifact import export_model  # noqa: E402
from .parity import PARITY_SENTENCES, ParityError  # noqa: E402
from .progress import Progress, StageLines, quiet_libraries  # noqa: E402
from .source import SourceModel, read_source  # noqa: E402
from .variants import VARIANTS  # noqa: E402

__all__ = [
    "PARITY_SENTENCES",
    "VARIANTS",
    "ParityError",
    "Progress",
    "SourceModel",
    "StageLines",
    "export_model",
    "quiet_libraries",
    "read_source",
]
