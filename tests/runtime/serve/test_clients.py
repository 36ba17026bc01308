"""The clients people point at an embedding server, unchanged, against a real `embedrt serve` on
127.0.0.1: the official `openai` client, `tei-client` and huggingface_hub's InferenceClient.
Every vector they get equals Encoder.encode with the same arguments."""

import json

import httpx
import numpy as np
import pytest
from fixtures.server_process import ServerProcess, post
from fixtures.tiny_model import build_artifact
from tokenizers import Tokenizer

from embedrt import Encoder
from embedrt.vectors import cosine_similarity, l2_normalize

TEXTS = ["the man plays guitar", "a woman cooks food in the kitchen", "dog"]
PROMPTS = {"query": "quick brown ", "passage": "someone is "}
LONG = "the cat " * 30 + "market fell sharply on monday"  # 68 tokens; the tiny model reads 32


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The tiny artifact with prompts in its manifest (as an export of a model with prompts)."""
    path = build_artifact(tmp_path_factory.mktemp("prompted") / "artifact")
    manifest = json.loads((path / "embedrt.json").read_text())
    manifest["prompts"] = PROMPTS
    (path / "embedrt.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def encoder(artifact):
    return Encoder.load(artifact, device="cpu")


@pytest.fixture(scope="module")
def server(artifact, tmp_path_factory):
    srv = ServerProcess(artifact, tmp_path_factory.mktemp("clients"), "--threads", "2")
    yield srv
    assert srv.stop() == 0


def close(got, want):
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=1e-6)


# ---- openai ----


def test_openai_client(server, encoder):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    res = client.embeddings.create(model="tiny-fixture", input=TEXTS, user="user-42")
    close([d.embedding for d in res.data], encoder.encode(TEXTS))
    assert res.model == "tiny-fixture"  # the artifact's source model, not its folder's name
    assert [m.id for m in client.models.list()] == ["tiny-fixture"]
    # dimensions: the first k floats, unit length again, as OpenAI returns them
    res = client.embeddings.create(model="tiny-fixture", input=TEXTS, dimensions=8)
    close([d.embedding for d in res.data], l2_normalize(encoder.encode(TEXTS, dimensions=8)))
    assert np.allclose(np.linalg.norm([d.embedding for d in res.data], axis=1), 1, atol=1e-6)
    # token ids: a list of lists, and one list, this model's (GET /tokenize gives them)
    rows = encoder.tokenize(TEXTS)
    res = client.embeddings.create(model="tiny-fixture", input=rows, encoding_format="float")
    close([d.embedding for d in res.data], encoder.encode(TEXTS))
    assert res.usage.prompt_tokens == sum(map(len, rows))
    res = client.embeddings.create(model="tiny-fixture", input=rows[0])
    close([d.embedding for d in res.data], encoder.encode(TEXTS[:1]))
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="text-embedding-3-small", input="dog")
    assert e.value.code == "model_not_found" and e.value.body["param"] == "model"
    with pytest.raises(openai.UnprocessableEntityError, match="token ids are integers from 0"):
        client.embeddings.create(model="tiny-fixture", input=[[5, 10**6]])


# ---- tei-client ----


def test_tei_client(server, encoder, artifact):
    from tei_client import HttpClient, ModelType
    from tei_client.models import TruncationDirection

    client = HttpClient(server.url)
    assert client.health()
    info = client.info()
    assert info.server_model_type == ModelType.Embedding
    assert info.server_model_metadata.pooling == "mean"
    assert info.server_model_id == "tiny-fixture" and info.max_input_length == 32
    assert info.server_model_dtype == "float32" and info.tokenization_workers == 1
    close(client.embed(TEXTS), encoder.encode(TEXTS))
    close(client.embed("dog"), encoder.encode(["dog"]))
    close(client.embed(TEXTS, prompt_name="query"), encoder.encode(TEXTS, prompt_name="query"))
    assert client.prompt_names() == ["query", "passage"]
    # truncate (tei-client sends false by default: a long text is then refused, as by TEI)
    close(client.embed([LONG], truncate=True), encoder.encode([LONG]))
    assert "error" in client.embed([LONG])
    # truncating from the left keeps the text's last tokens
    left = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    left.enable_truncation(32, direction="left")
    want = encoder.encode_tokens([left.encode(LONG).ids])
    got = client.embed([LONG], truncate=True, truncation_direction=TruncationDirection.Left)
    close(got, want)
    assert not np.allclose(want, encoder.encode([LONG]), atol=1e-3)  # it is another cut
    # tokenize and decode
    (tokens,) = client.tokenize("the dog plays")
    assert tokens.get_ids() == encoder.tokenize(["the dog plays"])[0]
    assert [t.text for t in tokens.tokens] == ["[CLS]", "the", "dog", "plays", "[SEP]"]
    assert [(t.start, t.stop) for t in tokens.tokens[1:3]] == [(0, 3), (4, 7)]
    assert tokens.tokens[0].special and tokens.tokens[0].start is None
    (prompted,) = client.tokenize("dog", prompt_name="passage")
    assert prompted.get_ids() == encoder.tokenize(["someone is dog"])[0]
    # as the tokenizers library decodes (the tiny tokenizer's [CLS] is no added special token,
    # so skip_special_tokens keeps it, as it would in text-embeddings-inference)
    plain = Tokenizer.from_file(str(artifact / "tokenizer.json"))
    ids = tokens.get_ids()
    assert client.decode(ids) == [plain.decode(ids)] and "the dog plays" in plain.decode(ids)
    assert client.decode([ids[1:-1], [9]], skip_special_tokens=False) == ["the dog plays", "was"]


def test_embed_all_is_a_424_in_teis_shape(server):
    r = post(server.url, "/embed_all", {"inputs": "dog"})
    assert r.status_code == 424 and r.json()["error_type"] == "Backend"
    assert "pooled vector" in r.json()["error"]


def test_tei_embed_options_over_http(server, encoder):
    r = post(server.url, "/embed", {"inputs": TEXTS, "dimensions": 4})
    close(r.json(), l2_normalize(encoder.encode(TEXTS, dimensions=4)))  # TEI: cut, then normalize
    ids = encoder.tokenize(["dog"])[0]
    r = post(server.url, "/embed", {"inputs": ["a woman cooks food in the kitchen", ids]})
    close(r.json(), encoder.encode(["a woman cooks food in the kitchen", "dog"]))
    # a prompt with token-id inputs: decoded, prompted, tokenized, as TEI does (the ids of the
    # word alone: the tiny tokenizer's [CLS] is no added special token, so decoding keeps it)
    r = post(server.url, "/embed", {"inputs": [ids[1:-1]], "prompt_name": "query"})
    close(r.json(), encoder.encode(["dog"], prompt_name="query"))
    r = post(server.url, "/embed", {"inputs": "dog", "prompt_name": "nope"})
    assert r.status_code == 422 and 'Available prompts: ["query", "passage"]' in r.json()["error"]


# ---- huggingface_hub ----


def test_huggingface_hub_inference_client(server, encoder, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # `make` exports HF_HUB_OFFLINE=1 (no model hub here), which makes huggingface_hub refuse
    # every request, 127.0.0.1 included; this client talks only to the local server
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(base_url=server.url)
    close(client.feature_extraction("the man plays guitar"), encoder.encode(TEXTS[:1]))
    close(client.feature_extraction(TEXTS), encoder.encode(TEXTS))
    close(
        client.feature_extraction(TEXTS, prompt_name="passage", dimensions=8, normalize=True),
        l2_normalize(encoder.encode(TEXTS, prompt_name="passage", dimensions=8)),
    )
    close(
        client.feature_extraction([LONG], truncate=True, truncation_direction="left"),
        post(server.url, "/embed", {"inputs": [LONG], "truncation_direction": "Left"}).json(),
    )
    scores = client.sentence_similarity("a dog", other_sentences=TEXTS)
    vecs = encoder.encode(["a dog", *TEXTS])
    close(scores, cosine_similarity(vecs[:1], vecs[1:])[0])


def test_info_holds_teis_fields(server):
    info = httpx.get(server.url + "/info", timeout=10).json()
    for field in (
        "model_id", "model_sha", "model_dtype", "model_type", "max_concurrent_requests",
        "max_input_length", "max_batch_tokens", "max_batch_requests", "max_client_batch_size",
        "auto_truncate", "tokenization_workers", "version", "sha", "docker_label",
    ):  # fmt: skip
        assert field in info, field
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["auto_truncate"] is True and info["prompts"] == ["passage", "query"]
