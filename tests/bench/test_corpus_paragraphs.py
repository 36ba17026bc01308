"""bench/corpus.py's "paragraphs" and "documents" kinds: real Wikipedia prose, checked by sha256.

Needs the pinned package of bench/assets-bench.txt (make install installs it); skipped without.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedrt.export.source import resolve_source
from embedrt.tokenizer import TextTokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "corpus.py"


def _load_corpus():
    spec = importlib.util.spec_from_file_location("bench_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(corpus.WIKI_PACKAGE) is None,
    reason=f"the paragraphs corpus's package is not installed: {corpus.WIKI_INSTALL}",
)


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    return corpus.build_corpus(200, kind="paragraphs")


def test_paragraphs_are_distinct_prose_of_paragraph_length(paragraphs):
    assert len(paragraphs) == 200
    assert len(set(paragraphs)) == 200
    lo, hi = corpus.PARAGRAPH_WORDS
    for text in paragraphs:
        assert lo <= len(text.split()) <= hi, text
        assert text == text.strip() and "\n" not in text
        assert not text[0].islower(), text  # not the rest of a cut sentence
        assert text.rstrip("\"')\u201d\u2019")[-1] in ".!?", text
        assert sum(c.isalpha() for c in text) / len(text) > 0.6, text  # words, not tables
    # Paragraphs, not sentences: nearly every text holds more than one sentence.
    assert sum(bool(re.search(r"[.!?] [A-Z0-9]", t)) for t in paragraphs) >= 190
    tokenizer = TextTokenizer.load(
        resolve_source("all-MiniLM-L6-v2")[1] / "tokenizer.json", max_length=256
    )
    tokens = np.array(tokenizer.untruncated_lengths(paragraphs))
    assert np.percentile(tokens, 10) >= 60 and np.percentile(tokens, 90) <= 250
    assert np.mean(tokens > 256) <= 0.02


def test_paragraphs_are_a_seeded_order_of_all_of_them(paragraphs):
    assert corpus.build_corpus(20, kind="paragraphs") == paragraphs[:20]
    assert corpus.build_corpus(20, seed=1, kind="paragraphs") != paragraphs[:20]
    every = corpus.read_paragraphs(corpus.paragraphs_file())
    assert set(paragraphs) <= set(every)
    with pytest.raises(SystemExit, match=f"only {len(every)} distinct paragraphs"):
        corpus.build_corpus(len(every) + 1, kind="paragraphs")


def test_a_changed_or_missing_data_file_fails_naming_the_install(tmp_path):
    tampered = Path(shutil.copy(corpus.paragraphs_file(), tmp_path / "summaries_en-us.json"))
    data = tampered.read_bytes()
    tampered.write_bytes(data.replace(b"Wikipedia", b"Wikipedio", 1))
    with pytest.raises(SystemExit, match=f"sha256 .* expected {corpus.WIKI_SHA256}.*--require"):
        corpus.read_paragraphs(tampered)
    with pytest.raises(SystemExit, match="sha256 missing"):
        corpus.read_paragraphs(tmp_path / "absent.json")


def test_documents_are_whole_paragraphs_past_truncation():
    documents = corpus.build_corpus(60, kind="documents")
    assert corpus.build_corpus(10, kind="documents") == documents[:10]  # a seeded prefix
    assert len(set(documents)) == 60
    every = set(corpus.read_paragraphs(corpus.paragraphs_file()))
    lo, hi = corpus.DOCUMENT_CHARS
    for text in documents:
        parts = text.split("\n\n")
        assert len(parts) > 1 and set(parts) <= every
        assert lo <= len(text) and len(text) - len(parts[-1]) - 2 < hi
    tokenizer = TextTokenizer.load(
        resolve_source("all-MiniLM-L6-v2")[1] / "tokenizer.json", max_length=256
    )
    assert min(map(len, tokenizer.tokenize(documents))) == 256  # every one is cut
