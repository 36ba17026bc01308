"""`embedrt serve`'s API options from the command line reach the server: --prompt-name (the
default prompt of /v1/embeddings and /embed), --auto-truncate false (TEI's switch) and
--model-name."""

import json

import numpy as np
from fixtures.server_process import ServerProcess, post
from fixtures.tiny_model import build_artifact

from embedrt import Encoder

TEXTS = ["the man plays guitar", "dog"]
LONG = "the cat " * 30 + "market fell sharply on monday"  # past the tiny model's 32 tokens


def test_prompt_name_auto_truncate_and_model_name_from_the_command_line(tmp_path):
    artifact = build_artifact(tmp_path / "artifact")
    manifest = json.loads((artifact / "embedrt.json").read_text())
    manifest["prompts"] = {"query": "quick brown ", "passage": "someone is "}
    (artifact / "embedrt.json").write_text(json.dumps(manifest))
    encoder = Encoder.load(artifact, device="cpu")
    args = ("--prompt-name", "query", "--auto-truncate", "false", "--model-name", "mine")
    srv = ServerProcess(artifact, tmp_path, "--threads", "1", *args)
    try:
        res = post(srv.url, "/v1/embeddings", {"input": TEXTS, "model": "mine"})
        assert res.status_code == 200, res.text
        got = np.array([d["embedding"] for d in res.json()["data"]], np.float32)
        np.testing.assert_allclose(got, encoder.encode(TEXTS, prompt_name="query"), atol=1e-6)
        assert res.json()["model"] == "mine"
        # a request's own prompt_name still wins on /embed
        res = post(srv.url, "/embed", {"inputs": TEXTS, "prompt_name": "passage"})
        want = encoder.encode(TEXTS, prompt_name="passage")
        np.testing.assert_allclose(np.array(res.json(), np.float32), want, atol=1e-6)
        # auto-truncate off: an over-long input that does not ask to be cut is refused
        assert post(srv.url, "/embed", {"inputs": [LONG]}).status_code == 422
        assert post(srv.url, "/embed", {"inputs": [LONG], "truncate": True}).status_code == 200
    finally:
        assert srv.stop() == 0
