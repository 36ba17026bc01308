"""Request inputs: the parsers under hostile JSON (property-based), token-id inputs, left
truncation, and the server's --auto-truncate and --prompt-name, on the tiny offline model."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from tokenizers import Tokenizer

from embedrt import ConfigError, Encoder
from embedrt.errors import InputError
from embedrt.serve.app import EmbeddingService
from embedrt.serve.config import Limits, ServerConfig
from embedrt.serve.openai import parse_openai
from embedrt.serve.protocol import Input, parse_inputs
from embedrt.serve.tei import parse_embed, parse_similarity
from embedrt.tokenizer import TextTokenizer
from embedrt.vectors import l2_normalize

LIMITS = Limits(max_inputs=8)
VOCAB = 100
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "input": json_values,
        "inputs": json_values,
        "truncate": json_values,
        "truncation_direction": json_values,
        "prompt_name": json_values,
        "dimensions": json_values,
        "normalize": json_values,
        "encoding_format": json_values,
        "model": json_values,
        "user": json_values,
        "parameters": json_values,
    },
)


def valid(inputs: list[Input]) -> bool:
    return all(
        (isinstance(i, str) and i)
        or (isinstance(i, list) and i and all(type(t) is int and 0 <= t < VOCAB for t in i))
        for i in inputs
    )


@settings(max_examples=400, deadline=None)
@given(doc=fields | json_values)
def test_any_json_is_parsed_or_refused_with_an_input_error(doc):
    for parse in (
        lambda d: parse_openai(d, LIMITS, 16, VOCAB),
        lambda d: parse_embed(d, LIMITS, 16, VOCAB),
        lambda d: parse_similarity(d, LIMITS),
    ):
        try:
            req = parse(doc)
        except InputError:
            continue  # 400, 413 or 422: never a 500 nor a crash
        assert 1 <= len(req.inputs) and valid(req.inputs)
        assert req.dimensions is None or 1 <= req.dimensions <= 16


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(st.integers(min_value=-(2**64), max_value=2**64), min_size=1, max_size=40))
def test_token_ids_outside_the_vocabulary_are_refused(ids):
    ok = all(0 <= i < VOCAB for i in ids)
    for doc in ({"inputs": ids}, {"inputs": [ids, [1]]}, {"inputs": ["text", ids]}):
        try:
            got = parse_inputs(doc, "inputs", LIMITS, VOCAB)
        except InputError as e:
            assert not ok and "token ids are integers from 0 to 99" in str(e)
        else:
            assert ok and ids in got


@pytest.fixture(scope="module")
def client(tiny_encoder):
    with TestClient(EmbeddingService(tiny_encoder, ServerConfig()).app) as c:
        yield c


def test_hostile_token_id_inputs_are_4xx_never_500(client, tiny_encoder):
    vocab = Tokenizer.from_file(f"{tiny_encoder.info.path}/tokenizer.json").get_vocab_size()
    cases = [
        ({"inputs": [vocab]}, 422),  # just past the vocabulary: would fail inside ONNX Runtime
        ({"inputs": [[1, 2], [vocab + 10**9]]}, 422),
        ({"inputs": [-1]}, 422),
        ({"inputs": [2**80]}, 422),
        ({"inputs": [[]]}, 400),
        ({"inputs": [1, "a"]}, 422),
        ({"inputs": [[1.0]]}, 422),
        ({"inputs": [[True]]}, 422),
        ({"inputs": list(range(2, vocab)) * 200, "truncate": False}, 422),
    ]
    for doc, status in cases:
        r = client.post("/embed", json=doc)
        assert r.status_code == status, (doc if len(str(doc)) < 200 else "long", r.text)
        assert r.json()["error_type"] in ("Validation", "Empty")
        r = client.post("/v1/embeddings", json={"input": doc["inputs"], "truncate": False})
        assert r.status_code in (400, 422), r.text
    # a huge list of valid ids is one input, cut to max_seq_length like a text
    huge = list(range(2, vocab)) * 3000  # 240k ids, about 1 MB of JSON
    r = client.post("/embed", json={"inputs": huge})
    assert r.status_code == 200
    np.testing.assert_allclose(r.json(), tiny_encoder.encode_tokens([huge[:32]]), atol=1e-6)
    r = client.post("/embed", json={"inputs": huge, "truncation_direction": "Left"})
    np.testing.assert_allclose(r.json(), tiny_encoder.encode_tokens([huge[-32:]]), atol=1e-6)
    assert client.get("/health").status_code == 200


def test_similarity_and_root_dispatch(client, tiny_encoder):
    doc = {"inputs": {"source_sentence": "a dog", "sentences": ["dog", "the cat"]}}
    for path in ("/similarity", "/", "/invocations"):
        r = client.post(path, json=doc)
        vecs = tiny_encoder.encode(["a dog", "dog", "the cat"])
        want = l2_normalize(vecs[1:]) @ l2_normalize(vecs[:1])[0]
        np.testing.assert_allclose(r.json(), want, atol=1e-6)
    r = client.post("/", json={"inputs": ["dog"]})
    np.testing.assert_allclose(r.json(), tiny_encoder.encode(["dog"]), atol=1e-6)
    r = client.post("/similarity", json={"inputs": {"source_sentence": "a", "sentences": []}})
    assert r.status_code == 400 and r.json()["error_type"] == "Empty"


def prompted_encoder(tiny_copy, default=None) -> Encoder:
    path = tiny_copy / "embedrt.json"
    manifest = json.loads(path.read_text())
    manifest.update(prompts={"query": "quick brown ", "doc": "someone is "})
    if default:
        manifest["default_prompt_name"] = default
    path.write_text(json.dumps(manifest))
    return Encoder.load(tiny_copy, device="cpu")


def test_prompt_name_server_default_and_model_default(tiny_copy):
    texts = ["the man plays guitar", "dog"]
    enc = prompted_encoder(tiny_copy, default="doc")
    with TestClient(EmbeddingService(enc, ServerConfig()).app) as c:  # the model's default
        got = c.post("/v1/embeddings", json={"input": texts}).json()["data"]
        np.testing.assert_allclose([d["embedding"] for d in got], enc.encode(texts), atol=1e-6)
    with TestClient(EmbeddingService(enc, ServerConfig(prompt_name="query")).app) as c:
        want = enc.encode(texts, prompt_name="query")
        got = c.post("/v1/embeddings", json={"input": texts}).json()["data"]
        np.testing.assert_allclose([d["embedding"] for d in got], want, atol=1e-6)
        np.testing.assert_allclose(c.post("/embed", json={"inputs": texts}).json(), want, atol=1e-6)
        r = c.post("/embed", json={"inputs": texts, "prompt_name": "doc"})  # the request's wins
        np.testing.assert_allclose(r.json(), enc.encode(texts, prompt_name="doc"), atol=1e-6)
        assert c.get("/info").json()["default_prompt_name"] == "query"
    with pytest.raises(ConfigError, match=r"--prompt-name.*Available prompts: \["):
        EmbeddingService(enc, ServerConfig(prompt_name="passage"))


def test_auto_truncate_off_refuses_long_inputs_unless_the_request_truncates(tiny_encoder):
    long = "dog " * 40
    with TestClient(EmbeddingService(tiny_encoder, ServerConfig(auto_truncate=False)).app) as c:
        r = c.post("/embed", json={"inputs": long})
        assert r.status_code == 422 and "has 42 tokens" in r.json()["error"]
        r = c.post("/v1/embeddings", json={"input": [[5] * 40]})
        assert r.status_code == 422 and "'input[0]' has 40 tokens" in r.text
        r = c.post("/embed", json={"inputs": long, "truncate": True})
        np.testing.assert_allclose(r.json(), tiny_encoder.encode([long]), atol=1e-6)
        assert c.get("/info").json()["auto_truncate"] is False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(
        st.sampled_from(["dog", "the", "cat", "plays", "x", "music,", "é", "quick", "  "]),
        min_size=1,
        max_size=40,
    ),
    repeat=st.integers(min_value=1, max_value=400),
)
def test_left_truncation_with_its_tail_cut_equals_the_library_s(tiny_artifact, words, repeat):
    """Long texts are tokenized from a tail cut at a space (tokenizer.cut_at_space): the rows
    must be what the tokenizers library's own left truncation gives on the whole text."""
    data = (tiny_artifact / "tokenizer.json").read_bytes()
    ours = TextTokenizer.from_bytes(data, "t", 8)
    ref = Tokenizer.from_str(data.decode())
    ref.no_padding()
    ref.enable_truncation(8, direction="left")
    text = " ".join(words * repeat)
    assert ours.tokenize_left([text]) == [ref.encode(text).ids]
