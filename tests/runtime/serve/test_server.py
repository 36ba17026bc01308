"""`embedrt serve` over real HTTP on 127.0.0.1: every route, every error, equal to Encoder.encode."""

import base64
import json
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from fixtures.server_process import ServerProcess, post

from embedrt.errors import ConfigError
from embedrt.serve.config import ServerConfig

KEY = "test-key-123"
TEXTS = ["the man plays guitar", "a woman cooks food in the kitchen", " ", "dog"]
LONG = "dog " * 80  # 82 tokens; the tiny model reads 32


@pytest.fixture(scope="module")
def server(tiny_artifact, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("server")
    (logdir / "key").write_text(KEY + "\n")
    srv = ServerProcess(
        tiny_artifact,
        logdir,
        "--api-key-file",
        str(logdir / "key"),
        "--max-inputs",
        "8",
        "--max-body-bytes",
        "2000",
        "--model-name",
        "tiny",
        "--max-batch-requests",
        "64",
        "--threads",
        "2",
        "--streams",
        "2",
    )
    yield srv
    assert srv.stop() == 0


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


def openai_vectors(doc):
    rows = [d["embedding"] for d in sorted(doc["data"], key=lambda d: d["index"])]
    if rows and isinstance(rows[0], str):
        return np.stack([np.frombuffer(base64.b64decode(r), "<f4") for r in rows])
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_openai_embeddings_equal_encode(server, tiny_encoder, fmt):
    r = post(
        server.url, "/v1/embeddings", {"input": TEXTS, "model": "tiny", "encoding_format": fmt}, KEY
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["object"] == "list" and doc["model"] == "tiny"
    assert [d["index"] for d in doc["data"]] == list(range(len(TEXTS)))
    np.testing.assert_allclose(openai_vectors(doc), tiny_encoder.encode(TEXTS), atol=1e-6)
    tokens = int(tiny_encoder.count_tokens(TEXTS).sum())
    assert doc["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_official_openai_client_works_unchanged(server, tiny_encoder):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    res = client.embeddings.create(model="tiny", input=TEXTS)  # the client asks for base64
    got = np.array([d.embedding for d in res.data], dtype=np.float32)
    np.testing.assert_allclose(got, tiny_encoder.encode(TEXTS), atol=1e-6)
    assert res.usage.prompt_tokens == int(tiny_encoder.count_tokens(TEXTS).sum())
    one = client.embeddings.create(model="tiny", input="dog", encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, tiny_encoder.encode("dog"), atol=1e-6)
    assert [m.id for m in client.models.list()] == ["tiny"]
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="tiny", input=[])
    assert "must not be an empty list" in e.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=server.url + "/v1", api_key="wrong", max_retries=0
        ).embeddings.create(model="tiny", input="dog")


def test_an_unknown_model_is_404_in_openais_shape_and_empty_text_is_400(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="text-embedding-3-small", input="dog")
    assert e.value.code == "model_not_found" and "this server serves 'tiny'" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:  # 400, as OpenAI and TEI answer it
        client.embeddings.create(model="tiny", input=["a dog", ""])
    assert "'input[1]' is an empty string" in e.value.message
    r = post(server.url, "/embed", {"inputs": ""}, KEY)
    assert r.status_code == 400 and r.json() == {
        "error": "'inputs' is an empty string; send some text",
        "error_type": "Empty",
    }


def test_tei_embed_equals_encode(server, tiny_encoder):
    r = post(server.url, "/embed", {"inputs": TEXTS}, KEY)
    assert r.status_code == 200
    np.testing.assert_allclose(
        np.array(r.json(), np.float32), tiny_encoder.encode(TEXTS), atol=1e-6
    )
    one = post(server.url, "/embed", {"inputs": "dog", "truncate": True}, KEY).json()
    assert len(one) == 1 and len(one[0]) == 16


def test_over_long_text_is_truncated_unless_truncate_is_false(server, tiny_encoder):
    r = post(server.url, "/embed", {"inputs": ["a", LONG]}, KEY)
    assert r.status_code == 200
    np.testing.assert_allclose(
        np.array(r.json(), np.float32), tiny_encoder.encode(["a", LONG]), atol=1e-6
    )
    r = post(server.url, "/embed", {"inputs": ["a", LONG], "truncate": False}, KEY)
    assert r.status_code == 422  # TEI's answer to an input over max_input_length
    assert r.json() == {
        "error": "'inputs[1]' has at least 82 tokens; this model reads at most 32: shorten it, "
        'or send "truncate": true to cut it',
        "error_type": "Validation",
    }
    r = post(server.url, "/v1/embeddings", {"input": LONG, "truncate": False}, KEY)
    assert (
        r.status_code == 422 and "'input[0]' has at least 82 tokens" in r.json()["error"]["message"]
    )
    exactly = " ".join(["dog"] * 30)  # 32 tokens: at the limit, not over it
    assert (
        post(server.url, "/embed", {"inputs": exactly, "truncate": False}, KEY).status_code == 200
    )


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"{not json", 422, "not valid JSON"),
        (b'["a"]', 422, "must be a JSON object"),
        (b'{"model": "x"}', 422, "'input' is required"),
        (b'{"input": 42}', 422, "got number"),
        (b'{"input": ["a", null]}', 422, "'input[1]' is null"),
        (b'{"input": ["a", "b \\ud800"]}', 422, "'input[1]' is not valid Unicode"),
        (b'{"input": "a", "encoding_format": "int8"}', 422, "'encoding_format'"),
        (b'{"input": "a", "dimensions": 17}', 422, "'dimensions' must be an integer from 1 to 16"),
        (b'{"input": [3, -1]}', 422, "'input'[1] is -1: token ids are integers from 0 to"),
        (json.dumps({"input": ["a"] * 9}).encode(), 422, "9 items; at most 8"),
        (json.dumps({"input": "x" * 3000}).encode(), 413, "at most 2000 are accepted"),
    ],
)
def test_openai_errors(server, body, status, fragment):
    r = post(server.url, "/v1/embeddings", body, KEY)
    assert r.status_code == status
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"] == "invalid_request_error"


def test_a_model_name_that_is_not_utf8_is_refused_at_startup():
    # surrogateescape'd command-line bytes: every answer would fail to render
    with pytest.raises(ConfigError, match="model_name .* not valid UTF-8"):
        ServerConfig(model_name="bad\udcff")


def test_tei_errors_take_tei_shape(server):
    r = post(server.url, "/embed", {"inputs": [1.5]}, KEY)
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"
    r = post(server.url, "/embed", {"inputs": "a", "normalize": False}, KEY)
    assert r.status_code == 424 and "L2-normalizes" in r.json()["error"]  # TEI: backend can't
    assert r.json()["error_type"] == "Backend"
    r = post(server.url, "/embed", {"inputs": "a"}, None)
    assert r.status_code == 401 and r.json()["error_type"] == "Unauthorized"


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/v1/embeddings"),
        ("POST", "/embed"),
        ("GET", "/info"),
        ("GET", "/metrics"),
        ("GET", "/v1/models"),
    ],
)
def test_every_route_but_health_needs_the_key(server, method, path):
    for headers in ({}, auth("wrong"), {"Authorization": KEY}):
        r = httpx.request(method, server.url + path, headers=headers, content=b'{"input": "a"}')
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_info_and_unknown_routes(server):
    info = httpx.get(server.url + "/info", headers=auth()).json()
    assert info["model_id"] == "tiny" and info["dim"] == 16 and info["max_input_length"] == 32
    assert info["device"] == "cpu" and info["max_client_batch_size"] == 8
    assert info["max_batch_requests"] == 64 and info["max_batch_tokens"] == 16384
    assert info["streams"] == 2  # rounds of several runs go to two single-thread runs at once
    r = httpx.get(server.url + "/nope", headers=auth())
    assert r.status_code == 404 and r.json()["error"]["message"] == "Not Found"
    r = httpx.get(server.url + "/v1/embeddings", headers=auth())
    assert r.status_code == 405 and "error" in r.json()


def test_metrics_count_requests_batches_and_padding(server):
    def cpu(m, work):
        return m.get(("embedrt_cpu_seconds_total", (("work", work),)), 0.0)

    def runs(m):
        return sum(m.get(("embedrt_runs_total", (("threads", t),)), 0.0) for t in ("one", "all"))

    before = server.metrics(auth())
    post(server.url, "/v1/embeddings", {"input": TEXTS}, KEY)
    post(server.url, "/v1/embeddings", {"input": TEXTS})  # no key: 401
    m = server.metrics(auth())
    assert m[("embedrt_requests_total", (("route", "/v1/embeddings"), ("status", "200")))] >= 1
    assert m[("embedrt_requests_total", (("route", "/v1/embeddings"), ("status", "401")))] >= 1
    assert m[("embedrt_batch_size_count", ())] >= 1 and m[("embedrt_batch_tokens_sum", ())] > 0
    assert m[("embedrt_queue_depth", ())] == 0
    assert m[("embedrt_dropped_requests_total", ())] == 0  # 413s and 422s are not client drops
    assert 0 < m[("embedrt_padding_efficiency", ())] <= 1
    assert m[("embedrt_inference_seconds_count", ())] == m[("embedrt_batch_size_count", ())]
    assert m[("embedrt_queue_seconds_count", ())] >= 1
    # the request's runs, and the CPU its inference and tokenization took; the process's own CPU
    assert runs(m) > runs(before)
    assert cpu(m, "inference") > cpu(before, "inference")
    assert cpu(m, "tokenization") > cpu(before, "tokenization")
    assert m[("process_cpu_seconds_total", ())] > 0


def test_cli_errors_exit_2(tmp_path, tiny_artifact):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "embedrt.cli", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    res = run("-m", str(tmp_path / "missing"))
    assert res.returncode == 3 and "does not exist" in res.stderr
    res = run("-m", str(tiny_artifact), "--api-key-file", str(tmp_path / "nokey"))
    assert res.returncode == 2 and "--api-key-file" in res.stderr
    res = run("-m", str(tiny_artifact), "--max-queue", "0")
    assert res.returncode == 2 and "max_queue must be an integer from 1" in res.stderr
    # Checked before the model loads (it used to fail after): a nonexistent model path shows it.
    res = run("-m", str(tmp_path / "missing"), "--port", "99999")
    assert res.returncode == 2 and "port must be an integer from 0 to 65,535" in res.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:  # a port in use is refused before the model loads too
        res = run("-m", str(tmp_path / "missing"), "--port", str(busy.getsockname()[1]))
        assert res.returncode == 2 and "cannot listen on 127.0.0.1" in res.stderr
    finally:
        busy.close()


def test_serve_imports_without_its_extra_and_starting_the_server_names_it(tiny_artifact):
    script = (
        "import sys, embedrt.serve\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnx', "
        "'sentence_transformers', 'fastapi', 'starlette', 'uvicorn', 'orjson', 'prometheus_client')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    for module, named in (
        ("starlette", "starlette"),
        ("orjson", "orjson"),
        ("uvicorn", "uvicorn"),
        ("prometheus_client", "prometheus-client"),
    ):
        script = (
            f"import sys; sys.modules['{module}'] = None\n"
            "from embedrt.serve import ServerConfig, serve\n"
            "print('imported', flush=True)\n"
            "serve(sys.argv[1], ServerConfig(port=0))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, str(tiny_artifact)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == "imported", out.stderr
        assert (
            out.returncode != 0
            and "pip install 'embedrt[serve]'" in out.stderr
            and named in out.stderr
        )


def test_in_process_lifespan_starts_and_stops_the_worker(tiny_encoder):
    """The ASGI app without a server: 503 before startup, answers inside its lifespan, 503 after."""
    import asyncio

    from starlette.testclient import TestClient

    from embedrt.serve.app import EmbeddingService
    from embedrt.serve.config import ServerConfig

    service = EmbeddingService(tiny_encoder, ServerConfig())

    async def before():
        transport = httpx.ASGITransport(app=service.app)  # runs no lifespan: worker not started
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get("/health"), await c.post("/embed", json={"inputs": "a"})

    health, embed = asyncio.run(before())
    assert health.status_code == 503 and embed.status_code == 503
    assert embed.json()["error_type"] == "Unhealthy"
    with TestClient(service.app) as client:
        r = client.post("/embed", json={"inputs": ["dog", "the cat"]})
        np.testing.assert_allclose(
            np.array(r.json(), np.float32), tiny_encoder.encode(["dog", "the cat"]), atol=1e-6
        )
    assert not service.scheduler.alive


def test_json_past_the_parsers_limits_is_422_not_500(tiny_encoder):
    from starlette.testclient import TestClient

    from embedrt.serve.app import EmbeddingService
    from embedrt.serve.config import ServerConfig

    huge_int = b'{"inputs": ' + b"9" * 5000 + b"}"  # int() refuses > 4300 digits: ValueError
    deep = b"[" * 100_000 + b"]" * 100_000  # RecursionError; 200 KB, so decoded on the pool
    with TestClient(EmbeddingService(tiny_encoder, ServerConfig()).app) as client:
        for path in ("/embed", "/v1/embeddings"):
            for body, fragment in ((huge_int, "not valid JSON"), (deep, "nested too deeply")):
                r = client.post(path, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 422 and fragment in r.text, (path, r.text)


def test_shutdown_lets_cancelled_requests_clean_up_and_is_bounded(tiny_artifact):
    """After uvicorn's grace period cancels the requests still running, the app's shutdown must
    leave the event loop free for their cleanup, and stop waiting for a stuck worker."""
    import asyncio

    from fixtures.gated import GatedRunner

    from embedrt import Encoder
    from embedrt.serve.app import EmbeddingService
    from embedrt.serve.config import ServerConfig

    # One stream: the held run keeps the next request queued (with two, it would run beside it).
    encoder = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=1)
    encoder.runner = gated = GatedRunner(encoder)  # the seam: the runner the scheduler is given
    service = EmbeddingService(encoder, ServerConfig(graceful_timeout_s=1.0))

    async def main():
        lifespan = service._lifespan(service.app)
        await lifespan.__aenter__()
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            running = asyncio.create_task(client.post("/embed", json={"inputs": "a dog"}))
            assert await asyncio.to_thread(gated.entered.wait, 30)  # the worker is stuck in it
            queued = asyncio.create_task(client.post("/embed", json={"inputs": "the cat"}))
            for _ in range(3000):
                if service.scheduler.depth == 1:
                    break
                await asyncio.sleep(0.01)
            assert service.scheduler.depth == 1  # queued behind the held run
            running.cancel()
            queued.cancel()
            try:
                await lifespan.__aexit__(None, None, None)  # ends after its 1 s timeout
                cleaned_up = queued.done()
            finally:
                gated.release.set()
        return cleaned_up, service.scheduler.depth

    cleaned_up, depth = asyncio.run(main())
    assert cleaned_up and depth == 0


def test_a_request_over_the_token_budget_is_413_and_the_server_goes_on(tiny_encoder):
    from starlette.testclient import TestClient

    from embedrt.serve.app import EmbeddingService
    from embedrt.serve.config import Limits, ServerConfig

    texts = ["the dog plays music"] * 10  # 6 tokens each
    config = ServerConfig(limits=Limits(max_request_tokens=50))
    with TestClient(EmbeddingService(tiny_encoder, config).app) as client:
        r = client.post("/v1/embeddings", json={"input": texts})
        assert r.status_code == 413
        assert (
            "'input' holds 60 tokens; this server takes at most 50" in r.json()["error"]["message"]
        )
        assert client.post("/embed", json={"inputs": texts[:8]}).status_code == 200


def test_a_huge_text_is_answered_without_tokenizing_all_of_it(tiny_encoder):
    # 3 MB of words in one text: cut before the tokenizer, then truncated as always; with
    # truncate off it is refused, counted from its head ("at least").
    from starlette.testclient import TestClient

    from embedrt.serve.app import EmbeddingService
    from embedrt.serve.config import ServerConfig

    huge = "the quick brown fox jumps over the lazy dog " * 70_000
    with TestClient(EmbeddingService(tiny_encoder, ServerConfig()).app) as client:
        r = client.post("/embed", json={"inputs": [huge, "a dog"]})
        assert r.status_code == 200
        np.testing.assert_allclose(
            np.array(r.json(), np.float32), tiny_encoder.encode([huge, "a dog"]), atol=1e-6
        )
        r = client.post("/embed", json={"inputs": huge, "truncate": False})
        assert r.status_code == 422 and "'inputs[0]' has at least" in r.json()["error"]
