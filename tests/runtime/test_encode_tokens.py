"""Encoder.encode_tokens takes only rows this model can run as given: ids the tokenizer knows,
at most max_seq_length of them. Anything else is an InputError naming the row, never a
silently different vector (ONNX Runtime's Gather reads a negative id from the end of the
table) nor ONNX Runtime's own error from deep inside the graph."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedrt.errors import InputError

TEXTS = ["a man plays the guitar", "", "the quick brown fox " * 3]


def test_rows_from_tokenize_in_any_integer_form_give_encodes_vectors(tiny_encoder):
    rows = tiny_encoder.tokenize(TEXTS)
    want = tiny_encoder.encode(TEXTS)
    np.testing.assert_array_equal(tiny_encoder.encode_tokens(rows), want)
    as_arrays = [np.array(r, dtype=np.int32) for r in rows]
    np.testing.assert_array_equal(tiny_encoder.encode_tokens(as_arrays), want)
    assert tiny_encoder.encode_tokens([]).shape == (0, tiny_encoder.dim)
    # a row of no tokens is a text with none: the zero vector, as encode gives it
    np.testing.assert_array_equal(tiny_encoder.encode_tokens([[]]), np.zeros((1, tiny_encoder.dim)))


def test_an_id_outside_the_vocabulary_is_refused_naming_the_row(tiny_encoder):
    rows = tiny_encoder.tokenize(TEXTS)
    vocab = tiny_encoder.tokenizer.vocab_size
    for bad in (-1, vocab, 2**40):
        wrong = [rows[0], rows[1][:1] + [bad] + rows[1][1:]]
        with pytest.raises(
            InputError, match=rf"rows\[1\] holds token id {bad}; .* 0 to {vocab - 1}"
        ):
            tiny_encoder.encode_tokens(wrong)


def test_a_row_past_max_seq_length_is_refused_not_cut(tiny_encoder):
    n = tiny_encoder.max_seq_length
    row = tiny_encoder.tokenize(["word " * (2 * n)])[0]
    assert len(row) == n
    tiny_encoder.encode_tokens([row])  # exactly max_seq_length: runs
    with pytest.raises(InputError, match=rf"rows\[0\] has {n + 1} tokens; .* at most {n}"):
        tiny_encoder.encode_tokens([row + row[-1:]])


@pytest.mark.parametrize(
    "rows, message",
    [
        ("101 102", r"rows must be a list of token id lists, got str"),
        ({"input_ids": [101, 102]}, r"got dict"),
        (7, r"got int"),
        ([[101, 102], 7], r"rows\[1\] is int"),
        ([["101", "102"]], r"rows\[0\] holds strings"),
        (["101 102"], r"rows\[0\] is str"),
        ([[101.0, 102.0]], r"rows\[0\] holds floats"),
        ([[True, False]], r"rows\[0\] holds booleans"),
        ([np.ones((2, 2), np.int64)], r"rows\[0\] is ndarray"),
        ([[101, 2**70]], r"rows\[0\] holds values that are not int64 integers"),
    ],
)
def test_wrong_types_are_refused_naming_the_row(tiny_encoder, rows, message):
    with pytest.raises(InputError, match=message):
        tiny_encoder.encode_tokens(rows)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_accepted_exactly_when_every_id_is_known_and_every_row_fits(tiny_encoder, data):
    vocab, n = tiny_encoder.tokenizer.vocab_size, tiny_encoder.max_seq_length
    ids = st.integers(min_value=-3, max_value=vocab + 3)
    rows = data.draw(st.lists(st.lists(ids, max_size=n + 2), max_size=4))
    fits = all(len(r) <= n and all(0 <= i < vocab for i in r) for r in rows)
    if fits:
        out = tiny_encoder.encode_tokens(rows)
        assert out.shape == (len(rows), tiny_encoder.dim) and np.isfinite(out).all()
    else:
        with pytest.raises(InputError):
            tiny_encoder.encode_tokens(rows)
