"""Request parsing and response bodies of the HTTP service (pure logic, no model, no server)."""

import base64
import functools
import json

import numpy as np
import pytest

from embedrt.errors import ConfigError, InputError
from embedrt.serve.openai import openai_body, parse_openai
from embedrt.serve.protocol import (
    EmptyError,
    Limits,
    TooLargeError,
    decode_json,
    openai_error,
    tei_error,
)
from embedrt.serve.tei import parse_embed, tei_body

LIMITS = Limits(max_inputs=4, max_body_bytes=1000)
VOCAB = 100


def parse_tei(doc, limits):
    return parse_embed(doc, limits, dim=16, vocab=VOCAB)


def parse_openai_(doc, limits, dim):
    return parse_openai(doc, limits, dim, VOCAB)


def test_openai_accepts_string_or_list_and_defaults():
    one = parse_openai_({"input": "a dog", "model": "m", "user": "u1"}, LIMITS, dim=16)
    assert one.inputs == ["a dog"] and one.model == "m" and one.encoding_format == "float"
    assert one.truncate is None and one.dimensions is None  # None: the server's --auto-truncate
    many = parse_openai_(
        {"input": ["a", " "], "encoding_format": "base64", "dimensions": 8}, LIMITS, 16
    )
    assert many.inputs == ["a", " "] and many.encoding_format == "base64"
    assert many.dimensions == 8
    with pytest.raises(EmptyError, match=r"'input\[1\]' is an empty string"):
        parse_openai_({"input": ["a", ""]}, LIMITS, 16)


def test_token_id_inputs_one_list_or_a_list_of_lists():
    assert parse_openai_({"input": [5, 6, 7]}, LIMITS, 16).inputs == [[5, 6, 7]]
    assert parse_openai_({"input": [[5], [6, 99]]}, LIMITS, 16).inputs == [[5], [6, 99]]
    # TEI takes a batch mixing texts and token ids
    assert parse_tei({"inputs": ["a", [4]]}, LIMITS).inputs == ["a", [4]]
    # one list of ids is ONE input, however long: the count limit is on inputs
    assert parse_tei({"inputs": list(range(50))}, LIMITS).inputs == [list(range(50))]


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ([1, 2], "must be a JSON object, got array"),
        ({}, "'input' is required"),
        ({"input": 3}, "'input' must be a string, a list of strings or token ids, got number"),
        ({"input": None}, "got null"),
        ({"input": ["ok", 7]}, "'input[1]' is number, expected a string or a list of token ids"),
        ({"input": [[1, "a"]]}, "'input[0]'[1] is string: token ids are integers from 0 to 99"),
        ({"input": [1, 100]}, "'input'[1] is 100: token ids are integers from 0 to 99"),
        ({"input": [1, -3]}, "'input'[1] is -3"),
        ({"input": [[1], True]}, "'input[1]' is boolean"),
        ({"input": [True, 1]}, "'input[0]' is boolean"),
        ({"input": "x", "model": 5}, "'model' must be a string"),
        ({"input": "x", "user": 5}, "'user' must be a string"),
        (
            {"input": "x", "encoding_format": "int8"},
            "'encoding_format' must be one of float, base64",
        ),
        ({"input": "x", "dimensions": 17}, "'dimensions' must be an integer from 1 to 16"),
        ({"input": "x", "dimensions": 0}, "'dimensions' must be an integer from 1 to 16"),
        ({"input": "x", "dimensions": 2.0}, "'dimensions' must be an integer from 1 to 16"),
        ({"input": "x", "truncate": "yes"}, "'truncate' must be true, false or null, got string"),
    ],
)
def test_openai_rejects_with_a_message_naming_the_field(doc, fragment):
    with pytest.raises(InputError) as e:
        parse_openai_(doc, LIMITS, dim=16)
    assert not isinstance(e.value, TooLargeError)
    assert fragment in str(e.value)


def test_empty_inputs_are_400s():
    for doc in ({"input": []}, {"input": ""}, {"input": [[]]}, {"input": [[1], []]}):
        with pytest.raises(EmptyError):
            parse_openai_(doc, LIMITS, dim=16)


def test_too_many_inputs_is_a_422_as_tei_answers_it():
    with pytest.raises(InputError, match="5 items; at most 4") as e:
        parse_openai_({"input": ["a"] * 5}, LIMITS, dim=16)
    assert not isinstance(e.value, TooLargeError)
    with pytest.raises(InputError, match="'inputs' has 5 items"):
        parse_tei({"inputs": [[1]] * 5}, LIMITS)


def test_tei_options():
    req = parse_tei(
        {
            "inputs": "a",
            "truncate": False,
            "normalize": False,
            "truncation_direction": "Left",
            "prompt_name": "query",
            "dimensions": 4,
            "encoding_format": "float",  # InferenceClient sends it; TEI ignores what it lacks
        },
        LIMITS,
    )
    assert req.inputs == ["a"] and req.truncate is False and req.normalize is False
    assert req.direction == "left" and req.prompt_name == "query" and req.dimensions == 4
    plain = parse_tei({"inputs": ["a", "b"]}, LIMITS)
    assert plain.truncate is None and plain.direction == "right" and plain.normalize is True
    assert parse_tei({"inputs": "a", "truncation_direction": "right"}, LIMITS).direction == "right"
    with pytest.raises(InputError, match="'inputs' is required"):
        parse_tei({"input": "a"}, LIMITS)
    with pytest.raises(InputError, match="'truncation_direction' must be"):
        parse_tei({"inputs": "a", "truncation_direction": "middle"}, LIMITS)


def test_decode_json_errors_are_input_errors():
    assert decode_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(InputError, match="not valid JSON"):
        decode_json(b"{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        decode_json(b"\xff\xfe")


def test_decode_json_limits_of_the_parser_are_input_errors():
    # Python's int() refuses > 4300 digits (ValueError), the C parser's stack a deep nesting
    # (RecursionError): both are the client's body, so 422 with a reason, not a 500.
    with pytest.raises(InputError, match="not valid JSON.*digits"):
        decode_json(b'{"input": ' + b"9" * 5000 + b"}")
    with pytest.raises(InputError, match="nested too deeply"):
        decode_json(b"[" * 100_000 + b"]" * 100_000)


def test_openai_body_float_and_base64_round_trip_exactly():
    vecs = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    doc = json.loads(openai_body(vecs, "m", 12, "float"))
    assert doc["object"] == "list" and doc["model"] == "m"
    assert doc["usage"] == {"prompt_tokens": 12, "total_tokens": 12}
    assert [d["index"] for d in doc["data"]] == [0, 1, 2]
    np.testing.assert_array_equal(np.array([d["embedding"] for d in doc["data"]], np.float32), vecs)
    doc = json.loads(openai_body(vecs, "m", 12, "base64"))
    got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in doc["data"]])
    np.testing.assert_array_equal(got, vecs)


def test_tei_body_is_a_list_of_vectors():
    vecs = np.ones((2, 3), np.float32)
    assert json.loads(tei_body(vecs)) == [[1.0] * 3] * 2
    vecs = np.random.default_rng(1).standard_normal((2, 384)).astype(np.float32)
    np.testing.assert_array_equal(np.array(json.loads(tei_body(vecs)), np.float32), vecs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize(
    "render",
    [
        tei_body,
        functools.partial(openai_body, model="m", tokens=1, encoding_format="float"),
        functools.partial(openai_body, model="m", tokens=1, encoding_format="base64"),
    ],
)
def test_a_non_finite_output_is_an_error_not_null(bad, render):
    # JSON has no NaN: a broken model must become a 500, never a vector of nulls
    vecs = np.ones((2, 3), np.float32)
    vecs[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        render(vecs)


def test_a_lone_surrogate_in_a_text_is_a_422_naming_it():
    # "\ud800" is valid JSON, but no UTF-8 tokenizer takes the string it decodes to
    doc = decode_json(b'{"input": ["fine", "caf\\u00e9", "bad \\ud800 text"]}')
    with pytest.raises(InputError, match=r"'input\[2\]' is not valid Unicode.*lone surrogate"):
        parse_openai_(doc, Limits(), 16)
    with pytest.raises(InputError, match="'inputs' is not valid Unicode"):
        parse_tei(decode_json(b'{"inputs": "\\udfff"}'), Limits())
    assert parse_tei(decode_json(b'{"inputs": "\\ud83d\\ude00 paired"}'), Limits()).inputs == [
        "\U0001f600 paired"
    ]


def test_error_shapes():
    err = json.loads(openai_error(429, "slow down"))["error"]
    assert err == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert json.loads(openai_error(500, "x"))["error"]["type"] == "server_error"
    assert json.loads(tei_error(422, "bad")) == {"error": "bad", "error_type": "Validation"}
    assert json.loads(tei_error(400, "none")) == {"error": "none", "error_type": "Empty"}
    assert json.loads(tei_error(424, "can't")) == {"error": "can't", "error_type": "Backend"}


def test_limits_validate():
    with pytest.raises(ConfigError, match="max_inputs"):
        Limits(max_inputs=0)
