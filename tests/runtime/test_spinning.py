"""How ONNX Runtime's threads wait for work (SessionOptions.spinning, issue 20): "run" (the
default) spins only while a run is in flight, "on" also between runs, "off" never. The latency
and CPU each costs are measured in bench/results/spinning.md; here, that each mode sets what it
says in the session, that the old True/False still mean "on"/"off", and that the vectors do not
depend on the mode, from one thread or many at once."""

import subprocess
import sys
import threading

import numpy as np
import pytest

from embedrt import Encoder
from embedrt.errors import ConfigError
from embedrt.session import SPINNING, SessionOptions, ort_session_options, spinning_mode

TEXTS = [f"text {i} " + "word " * (i * 11 % 70) for i in range(64)]


@pytest.mark.parametrize(
    ("mode", "allow", "stop"),
    [("off", "0", None), ("run", "1", "1"), ("on", "1", None)],
)
def test_each_mode_sets_onnx_runtime_spinning_and_its_stop_after_a_run(mode, allow, stop):
    so, _ = ort_session_options(SessionOptions(threads=2, spinning=mode), "cpu")
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == allow
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == allow
    if stop is None:  # ONNX Runtime raises for an entry never set
        with pytest.raises(Exception, match="force_spinning_stop"):
            so.get_session_config_entry("session.force_spinning_stop")
    else:
        assert so.get_session_config_entry("session.force_spinning_stop") == stop


def test_the_default_spins_only_while_a_run_is_in_flight():
    assert SessionOptions().spinning == "run"
    assert spinning_mode(True) == "on" and spinning_mode(False) == "off"
    for bad in ("yes", "", None, 1, 0.5):
        with pytest.raises(ConfigError, match="spinning .* is not one of off, run, on"):
            spinning_mode(bad)
    with pytest.raises(ConfigError, match="spinning 'always' is not one of off, run, on"):
        SessionOptions(spinning="always")


def test_vectors_do_not_depend_on_the_mode_even_with_concurrent_calls(tiny_artifact):
    encoders = {
        m: Encoder.load(tiny_artifact, device="cpu", threads=2, spinning=m) for m in SPINNING
    }
    ref = encoders["off"].encode(TEXTS, batch_size=8)
    for legacy, mode in ((True, "on"), (False, "off")):  # the option's old type still loads
        np.testing.assert_array_equal(
            Encoder.load(tiny_artifact, device="cpu", threads=2, spinning=legacy).encode(TEXTS),
            encoders[mode].encode(TEXTS),
        )
    results: dict[tuple[str, int], np.ndarray] = {}

    def work(mode: str, i: int) -> None:  # one text at a time: the all-thread session's path
        results[mode, i] = np.stack([encoders[mode].encode(t) for t in TEXTS])

    threads = [threading.Thread(target=work, args=(m, i)) for m in SPINNING for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 * len(SPINNING)
    for got in results.values():
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_cli_takes_the_three_modes_and_refuses_others(tiny_artifact):
    cmd = [sys.executable, "-m", "embedrt.cli", "similarity", str(tiny_artifact), "a b", "c d"]
    for mode in SPINNING:
        out = subprocess.run([*cmd, "--spinning", mode], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    bad = subprocess.run([*cmd, "--spinning", "yes"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'yes'" in bad.stderr
