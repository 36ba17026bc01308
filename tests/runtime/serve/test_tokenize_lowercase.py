"""/tokenize on a do_lower_case model: the token texts and offsets are those of the lowered
text the tokenizer saw, even where lowering changes the length ("İ".lower() is 2 characters)."""

import json

from fixtures.server_process import ServerProcess, post
from fixtures.tiny_model import build_artifact


def test_tokenize_offsets_of_a_lowercasing_model(tmp_path):
    artifact = build_artifact(tmp_path / "artifact")
    manifest = json.loads((artifact / "embedrt.json").read_text())
    manifest["do_lower_case"] = True
    (artifact / "embedrt.json").write_text(json.dumps(manifest))
    srv = ServerProcess(artifact, tmp_path, "--threads", "1")
    try:
        res = post(srv.url, "/tokenize", {"inputs": "İİİ THE Dog", "add_special_tokens": False})
        assert res.status_code == 200, res.text
        (tokens,) = res.json()
        seen = "İİİ THE Dog".lower().encode()
        for t in tokens:
            assert seen[t["start"] : t["stop"]].decode() == t["text"]
        assert [t["text"] for t in tokens][-2:] == ["the", "dog"]
    finally:
        assert srv.stop() == 0
