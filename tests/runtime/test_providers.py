"""Provider selection and options, as ONNX Runtime documents them (pure logic)."""

from pathlib import Path

import pytest

from embedrt.errors import ConfigError, ProviderError
from embedrt.providers import (
    CPU,
    CUDA,
    TENSORRT,
    TensorRTProfile,
    auto_devices,
    check_active,
    provider_list,
    resolve_device,
)

PROFILE = TensorRTProfile(max_batch=2048, max_seq=256, opt_batch=32, opt_seq=64)
INPUTS = ("input_ids", "attention_mask")


def test_auto_tries_every_offered_device_best_first():
    assert auto_devices([CPU, CUDA, TENSORRT]) == ["tensorrt", "cuda", "cpu"]
    assert auto_devices(["AzureExecutionProvider", CPU]) == ["cpu"]
    with pytest.raises(ProviderError, match="no usable provider"):
        auto_devices(["AzureExecutionProvider"])


def test_auto_prefers_tensorrt_then_cuda_then_cpu():
    assert resolve_device("auto", [TENSORRT, CUDA, CPU]) == "tensorrt"
    assert resolve_device("auto", [CUDA, CPU]) == "cuda"
    assert resolve_device("auto", ["AzureExecutionProvider", CPU]) == "cpu"


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_missing_gpu_provider_lists_available(device):
    with pytest.raises(ProviderError) as e:
        resolve_device(device, ["AzureExecutionProvider", CPU])
    assert "AzureExecutionProvider, CPUExecutionProvider" in str(e.value)
    assert "embedrt[gpu]" in str(e.value)


def test_unknown_device_is_config_error():
    with pytest.raises(ConfigError, match="'gpu' is not one of"):
        resolve_device("gpu", [CPU])


def test_tensorrt_options_keyed_by_variant_hash(tmp_path):
    sha = "ab" * 32
    providers = provider_list(
        "tensorrt",
        variant_sha256=sha,
        inputs=INPUTS,
        cache_dir=tmp_path,
        profile=PROFILE,
        fp16=True,
    )
    assert [p for p, _ in providers] == [TENSORRT, CUDA, CPU]
    trt = providers[0][1]
    assert trt["trt_fp16_enable"] is True
    assert trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"]
    assert Path(trt["trt_engine_cache_path"]) == tmp_path / f"{sha[:16]}-fp16-2048x256"
    assert trt["trt_timing_cache_path"] == trt["trt_engine_cache_path"]
    assert trt["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    assert trt["trt_profile_opt_shapes"] == "input_ids:32x64,attention_mask:32x64"
    assert trt["trt_profile_max_shapes"] == "input_ids:2048x256,attention_mask:2048x256"
    for other_sha, fp16, profile in (
        ("cd" * 32, True, PROFILE),
        (sha, False, PROFILE),
        (sha, True, TensorRTProfile(64, 256, 32, 64)),
    ):
        other = provider_list(
            "tensorrt",
            variant_sha256=other_sha,
            inputs=INPUTS,
            cache_dir=tmp_path,
            profile=profile,
            fp16=fp16,
        )
        assert other[0][1]["trt_engine_cache_path"] != trt["trt_engine_cache_path"]


def test_cuda_and_cpu_lists(tmp_path):
    kw = dict(
        variant_sha256="0" * 64, inputs=INPUTS, cache_dir=tmp_path, profile=PROFILE, fp16=False
    )
    assert [p for p, _ in provider_list("cuda", **kw)] == [CUDA, CPU]
    assert provider_list("cpu", **kw) == [(CPU, {})]


def test_silent_cpu_fallback_is_detected():
    check_active("cuda", [CUDA, CPU])
    with pytest.raises(ProviderError, match="did not activate CUDAExecutionProvider"):
        check_active("cuda", [CPU])
    with pytest.raises(ProviderError, match="TensorrtExecutionProvider"):
        check_active("tensorrt", [CUDA, CPU])


def test_a_short_max_seq_length_keeps_the_tensorrt_profile_ordered():
    # TensorRT builds no engine unless min <= opt <= max: a max_seq_length of 32 (an artifact's,
    # or Encoder.load's) under the tuned 64 tokens, or a small token budget, cuts opt to max.
    assert TensorRTProfile.within(2048, 256, 32, 64) == PROFILE
    short = TensorRTProfile.within(max_batch=16, max_seq=32, opt_batch=32, opt_seq=64)
    assert (short.opt_batch, short.opt_seq) == (16, 32)
    shapes = short.shapes(("input_ids",))
    assert shapes["trt_profile_opt_shapes"] == shapes["trt_profile_max_shapes"] == "input_ids:16x32"
