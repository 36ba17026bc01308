"""Ray Data on a real local cluster (2 CPUs, started once for the module): EmbedBatch in the three
batch formats, and `embedrt embed --ray` against the local job, row by row, bad rows included."""

import json
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="needs the 'ray' extra")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from fixtures.rows import make_rows, read_output  # noqa: E402

from embedrt import Encoder  # noqa: E402
from embedrt.errors import ConfigError, InputError, ModelLoadError  # noqa: E402
from embedrt.jobs import JobConfig, run_job  # noqa: E402
from embedrt.ray import (  # noqa: E402
    EmbedBatch,  # noqa: E402
    RayJobConfig,
    run_ray_job,
)

# Ray's own modules warn about their deprecated settings whenever a DataContext is made.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROWS = make_rows(240)
TEXTS = [r["text"] for r in ROWS]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def embeddings(column):
    return np.stack([np.asarray(v, dtype=np.float32) for v in column])


@pytest.mark.parametrize("fmt", ["pyarrow", "pandas", "numpy"])
def test_embed_batch_in_each_format_matches_encode_in_order(tiny_encoder, fmt, monkeypatch):
    # Ray Data hands blocks on as they finish unless told to keep order, as a user who needs
    # rows in order sets it (`embedrt embed --ray` sets it itself, and its tests run without):
    # without it, two actors under load returned batch 2 before batch 1.
    monkeypatch.setattr(
        ray.data.DataContext.get_current().execution_options, "preserve_order", True
    )
    ds = ray.data.from_items(ROWS).map_batches(
        EmbedBatch,
        fn_constructor_kwargs={"model": str(tiny_encoder.info.path), "text_column": "text"},
        concurrency=2,
        batch_format=fmt,
        batch_size=40,
    )
    out = ds.take_all()
    assert [r["id"] for r in out] == [r["id"] for r in ROWS]  # order kept, text kept
    assert [r["text"] for r in out] == TEXTS
    # each Ray batch is its own encode call, so the last bits may differ from one big call
    np.testing.assert_allclose(
        embeddings([r["embedding"] for r in out]), tiny_encoder.encode(TEXTS), atol=1e-6
    )
    assert [r["tokens"] for r in out] == list(tiny_encoder.count_tokens(TEXTS))


def test_embed_batch_applies_the_prompt_and_refuses_an_unknown_one(tiny_copy):
    path = tiny_copy / "embedrt.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["prompts"] = {"query": "quick brown "}
    path.write_text(json.dumps(manifest), encoding="utf-8")
    encoder = Encoder.load(tiny_copy, device="cpu")
    batch = {"text": np.array(TEXTS[:30], dtype=object)}
    out = EmbedBatch(str(tiny_copy), prompt_name="query", threads=1)(batch)
    np.testing.assert_allclose(
        embeddings(out["embedding"]), encoder.encode(TEXTS[:30], prompt_name="query"), atol=1e-6
    )
    assert not np.allclose(embeddings(out["embedding"]), encoder.encode(TEXTS[:30]), atol=1e-3)
    with pytest.raises(ConfigError, match="'passage' is not one of the model's prompts"):
        EmbedBatch(str(tiny_copy), prompt_name="passage", threads=1)


def test_embed_batch_and_the_ray_job_take_a_shorter_max_seq_length(tmp_path, tiny_encoder):
    short = Encoder.load(tiny_encoder.info.path, device="cpu", max_seq_length=8)
    batch = {"text": np.array(TEXTS[:30], dtype=object)}
    out = EmbedBatch(str(tiny_encoder.info.path), max_seq_length=8, threads=1)(batch)
    np.testing.assert_allclose(embeddings(out["embedding"]), short.encode(TEXTS[:30]), atol=1e-6)
    assert list(out["tokens"]) == list(short.count_tokens(TEXTS[:30])) and max(out["tokens"]) == 8
    with pytest.raises(ConfigError, match="max_seq_length must be an integer from 2 to 32"):
        EmbedBatch(str(tiny_encoder.info.path), max_seq_length=33, threads=1)
    src = write_parquet(tmp_path / "in.parquet", ROWS[:50])
    with pytest.raises(ConfigError, match="max_seq_length must be an integer from 2 to 32"):
        ray_job(tiny_encoder, src, tmp_path / "out", max_seq_length=33)  # before any actor
    assert not (tmp_path / "out").exists()
    ray_job(tiny_encoder, src, tmp_path / "out", id_field="id", max_seq_length=8)
    got = pq.read_table(tmp_path / "out").sort_by("id")
    order = sorted(range(50), key=lambda i: ROWS[i]["id"])
    np.testing.assert_allclose(
        embeddings(got.column("embedding").to_pylist()),
        short.encode([TEXTS[i] for i in order]),
        atol=1e-6,
    )


def test_arrow_batches_get_the_local_jobs_parquet_type(tiny_encoder):
    ds = ray.data.from_items(ROWS[:20]).map_batches(
        EmbedBatch,
        fn_constructor_kwargs={"model": str(tiny_encoder.info.path)},
        concurrency=1,
        batch_format="pyarrow",
    )
    schema = ray.get(ds.to_arrow_refs())[0].schema
    assert schema.field("embedding").type == pa.list_(pa.float32(), 16)
    assert schema.field("tokens").type == pa.int32()


def test_one_session_per_actor_threads_from_its_cpus(tiny_encoder):
    model = tiny_encoder.info.path  # the actor class must not capture the encoder itself

    @ray.remote(num_cpus=2)
    class Probe:
        def __init__(self):
            self.batch = EmbedBatch(model)

        def info(self):
            return self.batch.threads, self.batch.encoder.info.device

    assert ray.get(Probe.remote().info.remote()) == (2, "cpu")  # no num_gpus: never the GPU
    assert EmbedBatch(tiny_encoder.info.path).threads is None  # outside an actor: Encoder's default


def test_embed_batch_names_a_bad_row(tiny_encoder):
    batch = EmbedBatch(tiny_encoder.info.path, id_column="id")
    bad = pa.table({"id": ["a", "b"], "text": ["fine", None]})
    with pytest.raises(InputError, match=r"row id='b': text field 'text' is null"):
        batch(bad)
    with pytest.raises(InputError, match=r"row 1 of a batch of 2 \(pass id_column.*\): empty text"):
        EmbedBatch(tiny_encoder.info.path)({"text": np.array(["fine", "  "], dtype=object)})
    with pytest.raises(InputError, match=r"no column 'body'"):
        EmbedBatch(tiny_encoder.info.path, "body")(bad)


def write_parquet(path, rows, row_group_size=50):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def ray_job(tiny_encoder, src, out, **kw):
    config = RayJobConfig(actors=2, batch_rows=40, rows_per_file=64, progress=False, **kw)
    return run_ray_job(src, out, tiny_encoder.info.path, config)


@pytest.mark.parametrize("id_field", [None, "id"])
def test_ray_job_equals_local_job_row_by_row(tmp_path, tiny_encoder, id_field):
    src = write_parquet(tmp_path / "in.parquet", ROWS)
    local = tmp_path / "local.parquet"
    run_job(src, local, tiny_encoder, JobConfig(id_field=id_field, progress="none"))
    summary = ray_job(tiny_encoder, src, tmp_path / "ray.parquet", id_field=id_field)

    assert len(list((tmp_path / "ray.parquet").glob("*.parquet"))) > 1  # several files, in order
    assert pq.read_schema(local) == pq.read_table(tmp_path / "ray.parquet").schema
    emb, ids, tokens = read_output(tmp_path / "ray.parquet")
    ref_emb, ref_ids, ref_tokens = read_output(local)
    assert ids == ref_ids == ([r["id"] for r in ROWS] if id_field else list(range(1, 241)))
    assert tokens == ref_tokens
    np.testing.assert_allclose(emb, ref_emb, atol=1e-6)
    assert summary.rows == 240 and summary.tokens == sum(ref_tokens) and summary.skipped == 0


def test_directory_input_numbers_rows_across_files(tmp_path, tiny_encoder):
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "part-0.parquet", ROWS[:100], 30)
    write_parquet(tmp_path / "in" / "part-1.parquet", ROWS[100:], 30)
    (tmp_path / "in" / "_SUCCESS").write_text("")  # metadata files are not input
    ray_job(tiny_encoder, tmp_path / "in", tmp_path / "out")
    emb, ids, _ = read_output(tmp_path / "out")
    assert ids == list(range(1, 241))
    np.testing.assert_allclose(emb, tiny_encoder.encode(TEXTS), atol=1e-6)


BAD = [
    {"id": "a", "text": "first fine"},
    {"id": "b", "text": None},
    {"id": "c", "text": " "},
    {"id": "d", "text": "last fine"},
]


def test_bad_row_fails_naming_the_row_like_the_local_job(tmp_path, tiny_encoder):
    src = write_parquet(tmp_path / "in.parquet", BAD)
    with pytest.raises(InputError) as local:
        run_job(src, tmp_path / "local.parquet", tiny_encoder, JobConfig(progress="none"))
    with pytest.raises(InputError) as remote:
        ray_job(tiny_encoder, src, tmp_path / "out.parquet")
    assert str(remote.value) == str(local.value)  # "in.parquet row 2: text field 'text' is null..."
    assert "row 2: text field 'text' is null" in str(remote.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]  # nothing written
    old = write_parquet(tmp_path / "old.parquet", ROWS[:3])
    with pytest.raises(InputError, match="row 2"):
        ray_job(tiny_encoder, src, old, overwrite=True)
    assert pq.read_table(old).num_rows == 3  # --overwrite replaces only once the scan passed


def test_bad_rows_skipped_and_listed_like_the_local_job(tmp_path, tiny_encoder):
    src = write_parquet(tmp_path / "in.parquet", BAD)
    run_job(
        src, tmp_path / "local.parquet", tiny_encoder, JobConfig(progress="none", on_error="skip")
    )
    summary = ray_job(tiny_encoder, src, tmp_path / "out.parquet", on_error="skip")
    emb, ids, _ = read_output(tmp_path / "out.parquet")
    assert ids == [1, 4] and summary.rows == 2 and summary.skipped == 2
    np.testing.assert_allclose(emb, tiny_encoder.encode(["first fine", "last fine"]), atol=1e-6)
    side = (tmp_path / "out.parquet.skipped.jsonl").read_text()
    assert side == (tmp_path / "local.parquet.skipped.jsonl").read_text()
    assert [json.loads(x)["row"] for x in side.splitlines()] == [2, 3]


def test_empty_input_gives_the_local_jobs_empty_table(tmp_path, tiny_encoder):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), src)
    run_job(src, tmp_path / "local.parquet", tiny_encoder, JobConfig(progress="none"))
    (tmp_path / "out").write_bytes(b"an earlier output file")
    summary = ray_job(tiny_encoder, src, tmp_path / "out", overwrite=True)
    assert summary.rows == 0 and summary.actors == 0
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 0 and table.schema == pq.read_schema(tmp_path / "local.parquet")


def test_corrupted_model_in_an_actor_is_named(tmp_path, tiny_copy, tiny_encoder):
    src = write_parquet(tmp_path / "in.parquet", ROWS[:50])
    data = bytearray((tiny_copy / "model.onnx").read_bytes())
    data[-1] ^= 1
    (tiny_copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(
        ModelLoadError, match="actor failed to start: artifact file 'model.onnx' is corrupted"
    ):
        run_ray_job(src, tmp_path / "out", tiny_copy, RayJobConfig(actors=1, progress=False))
    assert not (tmp_path / "out").exists()


def test_wrong_input_and_existing_output_are_refused(tmp_path, tiny_encoder):
    src = write_parquet(tmp_path / "in.parquet", ROWS[:10])
    with pytest.raises(InputError, match=r"no column 'body' \(columns: id, text\)"):
        ray_job(tiny_encoder, src, tmp_path / "out", text_field="body")
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(InputError, match="--ray reads parquet"):
        ray_job(tiny_encoder, tmp_path / "in.jsonl", tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        ray_job(tiny_encoder, tmp_path / "missing.parquet", tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        ray_job(tiny_encoder, src, tmp_path / "out")
    with pytest.raises(ConfigError, match="holding more than parquet files"):
        ray_job(tiny_encoder, src, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "notes.txt").read_text() == "precious"
    with pytest.raises(ConfigError, match="batch_rows must be an integer from 1"):
        RayJobConfig(batch_rows=0)


def test_an_output_that_is_or_holds_the_input_is_refused_before_ray_starts(tmp_path, tiny_encoder):
    data = tmp_path / "data"
    data.mkdir()
    src = write_parquet(data / "in.parquet", ROWS[:10])
    before = src.read_bytes()
    for out in (data, tmp_path, data / "in.parquet"):  # the input's folder, its parent, itself
        with pytest.raises(ConfigError, match="is or holds the input"):
            ray_job(tiny_encoder, data if out != data / "in.parquet" else src, out, overwrite=True)
    with pytest.raises(ConfigError, match="skipped-rows file .* is or holds the input"):
        ray_job(tiny_encoder, src, tmp_path / "out", on_error="skip", skipped_path=str(src))
    assert src.read_bytes() == before


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "embedrt.cli", "embed", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_cli_joins_the_cluster_by_address(tmp_path, tiny_encoder, cluster):
    src = write_parquet(tmp_path / "in.parquet", ROWS)
    out = tmp_path / "out.parquet"
    res = cli(
        src,
        "-m",
        tiny_encoder.info.path,
        "-o",
        out,
        "--ray",
        "--ray-address",
        cluster,
        "--actors",
        "2",
        "--ray-batch-rows",
        "60",
        "--progress",
        "none",
    )
    assert res.returncode == 0, res.stderr
    assert "embedded 240 rows on Ray (2 actors)" in res.stderr
    emb, ids, _ = read_output(out)
    assert ids == list(range(1, 241))
    np.testing.assert_allclose(emb, tiny_encoder.encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ray"], "exists; pass --overwrite"),
        (["--actors", "2"], "add --ray"),
        (["--ray", "--resume"], "not resumable"),
        (["--ray", "--format", "npy"], "not resumable"),
        (["--ray", "--streams", "2"], "one stream per CPU"),
    ],
)
def test_cli_refusals_exit_2(tmp_path, tiny_encoder, capsys, extra, message):
    from embedrt.cli import main

    src = write_parquet(tmp_path / "in.parquet", ROWS[:5])
    (tmp_path / "out").mkdir()
    assert (
        main(["embed", str(src), "-m", tiny_encoder.info.path, "-o", str(tmp_path / "out"), *extra])
        == 2
    )
    assert message in capsys.readouterr().err


NO_RAY = """
import sys
sys.modules["ray"] = None  # as if the extra were not installed
import embedrt.ray, embedrt.ray.job
try:
    embedrt.ray.EmbedBatch(sys.argv[1])
except ImportError as e:
    print(e)
"""


def test_without_ray_the_error_names_the_extra(tiny_artifact):
    res = subprocess.run(
        [sys.executable, "-c", NO_RAY, str(tiny_artifact)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "pip install 'embedrt[ray]'" in res.stdout


def test_importing_embedrt_ray_imports_neither_ray_nor_the_heavy_stack():
    code = (
        "import sys, embedrt.ray, embedrt.ray.job; print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'ray', 'torch', 'transformers', 'onnx', 'sentence_transformers', 'pyarrow'}))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
