"""bench/machine.py names the CPU every throughput result was measured on, and headline.py
reads the generation back out of that line."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import headline  # noqa: E402
import machine  # noqa: E402


def test_amd_generations_by_family_and_model():
    assert machine._generation("AuthenticAMD", 25, 17) == "Zen 4"  # Genoa
    assert machine._generation("AuthenticAMD", 25, 1) == "Zen 3"  # Milan
    assert machine._generation("AuthenticAMD", 26, 2) == "Zen 5"  # Turin
    assert machine._generation("GenuineIntel", 6, 143) == ""


def test_this_machine_is_described_and_read_back():
    line = machine.describe()
    assert "CPUs" in line and "onnxruntime" in line
    generation = headline.cpu_of({"machine": line})
    fields = machine._cpuinfo()
    if "cpu family" in fields:  # Linux: the family and model (or their generation) come back
        assert generation != "not recorded"
    assert headline.cpu_of({"machine": "x86_64, 2 CPUs, Python 3.11.7"}) == "not recorded"
    assert headline.cpu_of({}) == "not recorded"
    zen4 = "AMD EPYC (family 25 model 17, Zen 4; avx512_vnni), 2 CPUs, Python 3.11.7"
    assert headline.cpu_of({"machine": zen4}) == "Zen 4"
    assert headline.cpu_of({"machine": "X (family 6 model 143; amx_int8), 8 CPUs"}) == (
        "family 6 model 143"
    )
