"""`embedrt serve` under concurrency, over real HTTP: batching, no mix-ups, 429, drops, drain, 500.

Each server here runs with a long --max-wait-ms so that requests provably sit in the queue
together; the assertions are on outcomes and counters, never on timings.
"""

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fixtures.server_process import ServerProcess, post
from fixtures.tiny_model import poison

from embedrt import Encoder

WORDS = "the a man woman dog cat plays guitar music kitchen cooks food quick brown fox lazy".split()


def sentence(i: int) -> str:
    """A distinct text per i (its words spell i in base 16), so any mix-up changes the vector."""
    words = [WORDS[int(d, 16)] for d in f"{i:x}"]
    return " ".join(words + WORDS[: i % 5])


def wait_for(srv, metric, value, timeout=60.0):
    """True once the server's metric reaches value (polled), False after timeout (generous: it
    returns as soon as the value is reached, and a loaded 2-core machine can be slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.metrics().get((metric, ()), 0) >= value:
            return True
        time.sleep(0.02)
    return False


def concurrently(n, fn):
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, range(n)))


def test_concurrent_clients_get_their_own_results(tiny_artifact, tiny_encoder, tmp_path):
    srv = ServerProcess(tiny_artifact, tmp_path, "--max-wait-ms", "20")
    try:

        def client(c):
            out = []
            with httpx.Client(base_url=srv.url, timeout=60) as http:
                for k in range(6):
                    texts = [sentence(1000 * c + 10 * k + j) for j in range(1 + (c + k) % 4)]
                    path, body = (
                        ("/embed", {"inputs": texts})
                        if k % 2
                        else ("/v1/embeddings", {"input": texts})
                    )
                    r = http.post(path, json=body)
                    assert r.status_code == 200, r.text
                    doc = r.json()
                    vecs = doc if k % 2 else [d["embedding"] for d in doc["data"]]
                    out.append((texts, np.array(vecs, np.float32)))
            return out

        results = [pair for res in concurrently(16, client) for pair in res]
        for texts, got in results:
            np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
        m = srv.metrics()
        rounds, rows = m[("embedrt_batch_size_count", ())], m[("embedrt_batch_size_sum", ())]
        assert rows == sum(len(t) for t, _ in results) and rounds <= len(results)
    finally:
        assert srv.stop() == 0


@pytest.fixture(scope="module")
def slow_queue(tiny_artifact, tmp_path_factory):
    """Tiny queue (4) and a 3 s wait: requests in flight together share one round, and a client
    that leaves is seen gone before its round, even with the clients slowed by a loaded machine."""
    srv = ServerProcess(
        tiny_artifact, tmp_path_factory.mktemp("slow"), "--max-queue", "4", "--max-wait-ms", "3000"
    )
    yield srv
    assert srv.stop() == 0


def test_requests_waiting_together_form_one_batch(slow_queue, tiny_encoder):
    before = slow_queue.metrics()
    texts = [[sentence(i), sentence(i + 50)] for i in range(4)]
    rs = concurrently(4, lambda i: post(slow_queue.url, "/embed", {"inputs": texts[i]}))
    for t, r in zip(texts, rs, strict=True):
        np.testing.assert_allclose(
            np.array(r.json(), np.float32), tiny_encoder.encode(t), atol=1e-6
        )
    after = slow_queue.metrics()
    assert after[("embedrt_batch_size_count", ())] - before[("embedrt_batch_size_count", ())] == 1
    assert after[("embedrt_batch_size_sum", ())] - before[("embedrt_batch_size_sum", ())] == 8


def test_a_disconnected_client_is_dropped_before_inference(slow_queue):
    before = slow_queue.metrics()
    host, port = slow_queue.url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": ["the dog"]}).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert wait_for(slow_queue, "embedrt_queue_depth", 1)  # admitted, waiting for its round
    key = ("embedrt_dropped_requests_total", ())
    assert wait_for(slow_queue, key[0], before.get(key, 0) + 1)
    time.sleep(0.5)  # room for a wrong batch to show in the counters
    after = slow_queue.metrics()
    assert after[key] - before.get(key, 0) == 1
    assert after[("embedrt_batch_size_count", ())] == before[("embedrt_batch_size_count", ())]
    gone = ("embedrt_requests_total", (("route", "/embed"), ("status", "499")))
    assert after[gone] - before.get(gone, 0) == 1


def test_a_flood_on_a_tiny_queue_gets_429_with_retry_after(slow_queue, tiny_encoder):
    rs = concurrently(24, lambda i: post(slow_queue.url, "/v1/embeddings", {"input": sentence(i)}))
    statuses = [r.status_code for r in rs]
    assert set(statuses) <= {200, 429} and statuses.count(429) >= 12 and 200 in statuses
    for i, r in enumerate(rs):
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
        else:
            got = np.array(r.json()["data"][0]["embedding"], np.float32)
            np.testing.assert_allclose(got, tiny_encoder.encode(sentence(i)), atol=1e-6)


def test_sigterm_drains_every_accepted_request(tiny_artifact, tiny_encoder, tmp_path):
    # 5 s for the 8 requests to be accepted together, however loaded the machine
    srv = ServerProcess(tiny_artifact, tmp_path, "--max-wait-ms", "5000")
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(post, srv.url, "/embed", {"inputs": [sentence(i)]}) for i in range(8)
        ]
        assert wait_for(srv, "embedrt_queue_depth", 8)
        srv.terminate()  # all 8 are accepted and waiting for their round
        rs = [f.result() for f in futures]
    for i, r in enumerate(rs):
        assert r.status_code == 200
        np.testing.assert_allclose(
            np.array(r.json()[0], np.float32), tiny_encoder.encode(sentence(i)), atol=1e-6
        )
    assert srv.proc.wait(30) == 0
    assert "Application shutdown complete" in srv.log()
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/health")


def test_an_unexpected_error_is_a_generic_500_and_spares_batch_mates(tiny_copy, tmp_path):
    # A word past the graph's embedding table: ONNX Runtime fails inside the run for a text
    # that holds it (a real, unforeseen inference error), never for another.
    word = poison(tiny_copy)
    srv = ServerProcess(tiny_copy, tmp_path, "--max-wait-ms", "500")
    try:
        inputs = [["the dog"], [f"the {word}"]]
        good, bad = concurrently(2, lambda i: post(srv.url, "/v1/embeddings", {"input": inputs[i]}))
        assert good.status_code == 200
        np.testing.assert_allclose(
            good.json()["data"][0]["embedding"],
            Encoder.load(tiny_copy, device="cpu").encode("the dog"),
            atol=1e-6,
        )
        assert bad.status_code == 500
        err = bad.json()["error"]
        ref = err["message"].split("reference ")[1].split()[0]
        # a generic message, nothing of the exception's text: that stays in the server's log
        assert err == {
            "message": f"internal server error (reference {ref} in the server log)",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        log = srv.log()
        assert f"error {ref} on /v1/embeddings: " in log and "Traceback" in log
        tei = post(srv.url, "/embed", {"inputs": f"a {word}"})
        assert tei.status_code == 500 and tei.json()["error_type"] == "Backend"
    finally:
        assert srv.stop() == 0
