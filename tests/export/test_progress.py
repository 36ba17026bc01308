"""What an export shows: one line per stage with its outcome, the libraries' chatter only with
--verbose, errors always; the Python API leaves the caller's logging as it was."""

import io
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
import transformers.utils.logging as hf_logging

from embedrt.cli import main
from embedrt.export import ParityError, StageLines, export_model, quiet_libraries
from embedrt.export import artifact as artifact_module

STAGES = [
    "[1/4] graph: torch -> ONNX",
    "[2/4] parity vs sentence-transformers",
    "[3/4] fp32: reference figures",
    "[4/4] int8: static quantization",
]
# What the libraries print on their own: weight-loading bars (tqdm), ONNX Runtime's quantizer
# advice, torch.onnx's tracer warnings.
NOISE = ("Loading weights", "it/s", "█", "pre-processing", "Warning")


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_cli_shows_its_stages_and_not_the_libraries_noise(tmp_path, st_mean):
    # Both at once: most of each run is importing torch.
    runs = {
        mode: subprocess.Popen(
            [sys.executable, "-m", "embedrt.cli", "export", str(st_mean), str(tmp_path / mode)]
            + ["--variants", "int8"]
            + (["--verbose"] if mode == "verbose" else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("quiet", "verbose")
    }
    quiet, verbose = map(finish, runs.values())
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stderr.splitlines()
    assert [line.split(" ... ")[0] for line in lines] == STAGES, quiet.stderr
    assert all(line.endswith(" s)") for line in lines), "each stage line ends with its time"
    assert "max abs diff" in lines[1] and "min cosine" in lines[1] and "passed" in lines[1]
    assert "STS-B dev Spearman" in lines[3]
    assert ": passed (" in lines[3] or ": refused: " in lines[3]
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    out = tmp_path / "quiet"
    assert quiet.stdout in (
        f"wrote {out}: fp32, int8\n",
        f"wrote {out}: fp32 (refused: int8; embedrt info {out} says why)\n",
    )

    assert verbose.returncode == 0, verbose.stderr
    assert [n for n in NOISE if n in verbose.stderr], "--verbose shows the libraries' output"
    assert len(verbose.stderr) > len(quiet.stderr)
    for stage in STAGES:  # still there, each repeated with its outcome
        assert f"{stage} ...\n" in verbose.stderr and f"{stage}: " in verbose.stderr


def test_quiet_does_not_hide_errors(tmp_path, st_mean, monkeypatch, capsys):
    """A ParityError in the middle of a stage: the stage line ends, the one-line error follows."""
    real = artifact_module.reference_embeddings

    def shifted(path, sentences, *rest):
        ref = real(path, sentences, *rest)
        ref[3] = np.roll(ref[3], 1)
        return ref

    monkeypatch.setattr(artifact_module, "reference_embeddings", shifted)
    assert main(["export", str(st_mean), str(tmp_path / "out"), "--variants", "none"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[1/2] graph: torch -> ONNX ... model.onnx")
    assert err[1] == "[2/2] parity vs sentence-transformers ... failed"
    assert err[2].startswith("embedrt export: error: fp32 artifact differs") and len(err) == 3
    assert not (tmp_path / "out").exists()

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["export", str(st_mean), str(tmp_path / "mine")]) == 2
    assert "not an embedrt artifact" in capsys.readouterr().err
    assert main(["export", str(st_mean), str(tmp_path / "new"), "--variants", "opt,int4"]) == 2
    assert "no variant int4" in capsys.readouterr().err
    assert main(["export", str(st_mean), str(tmp_path / "new"), "--max-seq-length", "99"]) == 2
    assert (
        "max_seq_length must be an integer from 2 to 24 or None, got 99" in capsys.readouterr().err
    )


def test_quiet_libraries_restores_every_setting_and_lets_errors_through():
    root, ort = logging.getLogger(), logging.getLogger("onnxruntime")

    def settings():
        return (
            root.level,
            ort.level,
            hf_logging.get_verbosity(),
            hf_logging.is_progress_bar_enabled(),
        )

    before = settings()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ParityError, match="still raised"), quiet_libraries():
            assert root.level == logging.ERROR and not hf_logging.is_progress_bar_enabled()
            warnings.warn("a library's warning", UserWarning, stacklevel=1)
            raise ParityError("still raised")
        warnings.warn("the caller's own", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["the caller's own"]
    assert settings() == before


def test_stage_lines():
    out = io.StringIO()
    lines = StageLines(out)
    lines.start(1, 2, "graph: torch -> ONNX")
    lines.end("model.onnx 0.1 MB")
    lines.start(2, 2, "parity vs sentence-transformers")
    lines.close()
    lines.close()
    text = out.getvalue().splitlines()
    assert text[0].startswith("[1/2] graph: torch -> ONNX ... model.onnx 0.1 MB (")
    assert text[1:] == ["[2/2] parity vs sentence-transformers ... failed"]

    out = io.StringIO()
    lines = StageLines(out, own_line=True)
    lines.start(1, 1, "graph")
    out.write("a library's line\n")
    lines.end("done")
    lines.close()
    text = out.getvalue().splitlines()
    assert text[:2] == ["[1/1] graph ...", "a library's line"] and text[2].startswith(
        "[1/1] graph: done ("
    )


def test_python_api_reports_stages_and_leaves_logging_alone(tmp_path, st_mean):
    class Recorder:
        def __init__(self):
            self.events = []

        def start(self, step, steps, stage):
            self.events.append((step, steps, stage))

        def end(self, outcome):
            self.events.append(outcome)

    loggers = ["", "onnxruntime", "onnxruntime.quantization", "sentence_transformers", "torch"]
    before = [logging.getLogger(n).level for n in loggers] + [hf_logging.get_verbosity()]
    recorder = Recorder()
    manifest = export_model(st_mean, tmp_path / "out", variants=("int8", "opt"), progress=recorder)
    starts = [e for e in recorder.events if isinstance(e, tuple)]
    assert [s[2].split(":")[0] for s in starts] == [
        "graph",
        "parity vs sentence-transformers",
        "fp32",
        "opt",
        "int8",
    ]
    assert [s[:2] for s in starts] == [(i, 5) for i in range(1, 6)]
    assert len(recorder.events) == 10, "every stage that starts ends"
    assert ": passed" in recorder.events[-1] or ": refused: " in recorder.events[-1]  # int8's
    assert {v.name for v in manifest.variants} | set(manifest.refused) == {"fp32", "opt", "int8"}
    assert [logging.getLogger(n).level for n in loggers] + [hf_logging.get_verbosity()] == before
