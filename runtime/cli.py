"""The `embedrt` command: export, info, similarity. Strings become typed options here only."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import EmbedrtError

SAMPLE_SENTENCES = (
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "A woman is slicing onions in the kitchen.",
    "Vegetables are being cut.",
    "The stock market fell sharply on Monday.",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedrt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="sentence-transformers folder -> artifact directory")
    p.add_argument("src", help="model folder, or 'all-MiniLM-L6-v2' for the pinned base model")
    p.add_argument("out", help="artifact directory to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-parity", action="store_true", help="skip the check against sentence-transformers")
    p.set_defaults(handler=_export)

    p = sub.add_parser("info", help="manifest, variants, available and chosen providers")
    p.add_argument("artifact")
    _add_runtime_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_info)

    p = sub.add_parser("similarity", help="encode texts and print their cosine similarity table")
    p.add_argument("artifact")
    p.add_argument("texts", nargs="*", help="texts to compare (default: sample sentences)")
    _add_runtime_options(p)
    p.set_defaults(handler=_similarity)

    # Each command: a parser here, set_defaults(handler=...), and a handler below that imports
    # its feature module lazily (so `embedrt info` never pays for fastapi, pyarrow or torch).

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except EmbedrtError as e:
        print(f"embedrt {args.command}: error: {e}", file=sys.stderr)
        return 2


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "tensorrt"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"))
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")


def _export(args: argparse.Namespace) -> int:
    from .export import export_model  # needs the 'export' extra; the import names it if missing

    manifest = export_model(args.src, args.out, opset=args.opset, check_parity=not args.no_parity)
    for v in manifest.variants:
        print(f"wrote {args.out}/{v.file} ({v.name}): {json.dumps(v.quality)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .encoder import Encoder
    from .manifest import load_manifest

    manifest = load_manifest(args.artifact)
    enc = Encoder.load(args.artifact, args.device, args.precision, threads=args.threads)
    info = {
        "manifest": json.loads(manifest.to_json()),
        "loaded": enc.describe(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    src = manifest.source
    print(f"artifact   {args.artifact}")
    print(f"source     {src.get('model', '?')} (weights sha256 {str(src.get('weights_sha256', '?'))[:16]}...)")
    print(f"model      dim {manifest.dim}, max_seq_length {manifest.max_seq_length}, "
          f"pooling {manifest.pooling}, normalize {manifest.normalize}, opset {manifest.opset}")
    print("variants")
    for v in manifest.variants:
        print(f"  {v.name:6} {v.file:18} {v.precision:5} sha256 {v.sha256[:12]}  {json.dumps(v.quality)}")
        if v.notes:
            print(f"         note: {v.notes}")
    d = info["loaded"]
    print(f"providers  available: {', '.join(d['available_providers'])}")
    print(f"chosen     device {d['device']}, precision {d['precision']}, variant {d['variant']}, "
          f"active: {', '.join(d['active_providers'])}")
    print(f"tools      {json.dumps(manifest.tools)}")
    return 0


def _similarity(args: argparse.Namespace) -> int:
    from .encoder import Encoder

    texts = args.texts or list(SAMPLE_SENTENCES)
    enc = Encoder.load(args.artifact, args.device, args.precision, threads=args.threads)
    vecs = enc.encode(texts)
    sim = enc.similarity(vecs, vecs)
    i = enc.info
    print(f"{len(texts)} texts -> {vecs.shape[1]}-d embeddings on {i.device} "
          f"({i.precision}, {i.file}, active {i.active_providers[0]})")
    width = max(len(t) for t in texts)
    width = min(width, 48)
    print(" " * (width + 2) + "".join(f"{k:>7}" for k in range(len(texts))))
    for k, (t, row) in enumerate(zip(texts, sim)):
        label = (t if len(t) <= width else t[: width - 1] + "…").ljust(width)
        print(f"{label} {k}" + "".join(f"{x:7.3f}" for x in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
