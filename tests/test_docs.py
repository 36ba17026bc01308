"""The README tells the truth: its headline table is what bench/results says, and every file it
links or names exists."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_headline_table_is_what_bench_results_say():
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "headline.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr


def test_every_file_the_readme_links_or_names_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    named = re.findall(r"`((?:bench|docs|runtime|export|tests)/[\w./-]+)`", readme)
    missing = [p for p in links + named if not p.startswith("http") and not (ROOT / p).exists()]
    assert links and not missing, missing


def test_the_supported_models_table_is_what_the_export_tests_exercise():
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fixtures" / "supported.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
