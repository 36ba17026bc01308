"""Hostile and careless HTTP clients against a real `embedrt serve` on 127.0.0.1: huge headers,
stalled connections, a flood of connections, a shutdown under load, odd API keys.

Each test would have failed before the server's connection limits (serve/http.py) and drain
(app.drain): uvicorn buffered any header size, held half-sent requests forever, and cut off
requests at shutdown with a plain-text 500.
"""

import concurrent.futures
import json
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from fixtures.server_process import ServerProcess, post

HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def connect(url: str) -> socket.socket:
    host, port = url.rsplit("/", 1)[-1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.fixture(scope="module")
def guarded(tiny_artifact, tmp_path_factory):
    srv = ServerProcess(
        tiny_artifact,
        tmp_path_factory.mktemp("guarded"),
        "--read-timeout",
        "1",
        "--max-header-bytes",
        "16384",
        "--max-connections",
        "8",
    )
    yield srv
    assert srv.stop() == 0


def test_headers_over_the_limit_get_431_and_the_connection_closes(guarded):
    sock = connect(guarded.url)
    try:
        sock.sendall(HEAD + b"X-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before all of it is sent; what it answered is below
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "error": "request headers over 16384 bytes"
    }
    assert httpx.get(guarded.url + "/health", timeout=10).status_code == 200


def test_a_request_that_never_finishes_arriving_is_closed_with_408(guarded):
    stalled = []
    for partial in (b"", HEAD[:20], HEAD + b"X-Slow: 1\r\n"):  # nothing, half a line, no end
        sock = connect(guarded.url)
        sock.sendall(partial)
        stalled.append(sock)
    start = time.monotonic()
    for sock in stalled:
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start < 8  # within the read timeout (1 s), not held forever
    body = post(guarded.url, "/embed", {"inputs": "a dog"})
    assert body.status_code == 200


def test_a_trickling_client_cannot_hold_its_connection(guarded):
    sock = connect(guarded.url)
    sock.settimeout(0.3)
    closed = False
    for byte in HEAD * 20:  # one byte every 0.1 s: each restarted uvicorn's own timer
        try:
            sock.send(bytes([byte]))
            time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        try:
            if sock.recv(65536).startswith(b"HTTP/1.1 408"):
                closed = True
                break
        except TimeoutError:
            pass
    assert closed


def test_a_flood_of_stalled_connections_cannot_lock_out_a_real_client(guarded):
    stalled = [connect(guarded.url) for _ in range(20)]  # the cap is 8
    for sock in stalled:
        sock.sendall(HEAD[:10])
    time.sleep(0.3)
    r = httpx.post(guarded.url + "/embed", json={"inputs": "a dog"}, timeout=10)
    assert r.status_code == 200  # it took the place of the stalled connection waiting longest
    answers = [read_all(sock) for sock in stalled]
    assert all(a.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 503 ")) for a in answers), answers[:3]


def test_sigterm_answers_what_it_cuts_off_with_json_503(tiny_artifact, tmp_path):
    # 16 requests of 2048 texts: more work than the 0.2 s the drain limit allows.
    srv = ServerProcess(tiny_artifact, tmp_path, "--graceful-timeout", "0.2", "--threads", "1")
    texts = [f"text {i} " + "the dog plays music " * 8 for i in range(2048)]
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(
                    post,
                    srv.url,
                    "/embed" if i % 2 else "/v1/embeddings",
                    {"inputs" if i % 2 else "input": texts},
                    None,
                    60,
                )
                for i in range(16)
            ]
            time.sleep(0.5)  # accepted and queued
            srv.terminate()
            answers = [f.result() for f in futures]
    finally:
        code = srv.stop()
    statuses = sorted({r.status_code for r in answers})
    assert code == 0 and set(statuses) <= {200, 503} and 503 in statuses, statuses
    for r in answers:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert r.headers["content-type"] == "application/json"
            assert "shutting down" in json.dumps(r.json())  # each route's own JSON error shape
    assert "CancelledError" not in srv.log() and "Traceback" not in srv.log()


def test_a_utf8_api_key_matches_and_a_non_utf8_key_file_is_refused(tiny_artifact, tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text("clé-Ünïcode", encoding="utf-8")
    srv = ServerProcess(tiny_artifact, tmp_path, "--api-key-file", str(keyfile))
    try:
        ok = httpx.get(
            srv.url + "/v1/models", headers={"Authorization": "Bearer clé-Ünïcode".encode()}
        )
        assert ok.status_code == 200
        wrong = httpx.get(srv.url + "/v1/models", headers={"Authorization": b"Bearer cle"})
        assert wrong.status_code == 401
    finally:
        assert srv.stop() == 0
    keyfile.write_bytes(b"\xff\xfekey")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedrt.cli",
            "serve",
            "-m",
            str(tiny_artifact),
            "--api-key-file",
            str(keyfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "is not UTF-8 text" in res.stderr


def test_a_flood_of_huge_texts_beside_small_requests_answers_everyone(guarded, tiny_encoder):
    # Six ~4 MB texts at once (inside the body limit) used to cost seconds of tokenizing each on
    # the one worker thread; they are cut before the tokenizer now, and a small request sent
    # after them is answered with its own vector.
    huge = "the quick brown fox jumps over the lazy dog " * 90_000
    with concurrent.futures.ThreadPoolExecutor(7) as pool:
        floods = [
            pool.submit(post, guarded.url, "/embed", {"inputs": huge}, None, 120) for _ in range(6)
        ]
        time.sleep(0.2)
        small = pool.submit(post, guarded.url, "/embed", {"inputs": "a dog"}, None, 120).result()
        answers = [f.result() for f in floods]
    assert small.status_code == 200
    assert np.allclose(small.json()[0], tiny_encoder.encode("a dog"), atol=1e-6)
    assert [r.status_code for r in answers] == [200] * 6


def test_limits_hold_for_the_next_request_on_a_kept_alive_connection(guarded):
    sock = connect(guarded.url)
    sock.sendall(HEAD + b"\r\n")  # a whole first request: answered, the connection kept
    first = b""
    while b"\r\n\r\n" not in first or not first.endswith(b"}"):
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ")
    try:
        sock.sendall(HEAD + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert read_all(sock).startswith(b"HTTP/1.1 431 ")


def test_idle_kept_alive_connections_make_room_for_new_clients(guarded):
    idle = []
    for _ in range(12):  # over the cap of 8, each answered once and then left idle
        sock = connect(guarded.url)
        sock.sendall(HEAD + b"\r\n")
        got = b""
        while not got.endswith(b"}"):
            got += sock.recv(65536)
        idle.append(sock)
    r = httpx.post(guarded.url + "/embed", json={"inputs": "a dog"}, timeout=10)
    assert r.status_code == 200
    for sock in idle:
        sock.close()
