"""The ONNX Runtime session: creation with provider options, the active-provider check, and run.

On CUDA and TensorRT the session runs with IO binding: inputs are copied to the device once and
the output stays there until one copy back, instead of ONNX Runtime's per-run allocations.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import check_choice
from .errors import ConfigError, ModelLoadError, missing_extra
from .malloc import model_load
from .manifest import TABLES_METADATA_KEY
from .providers import check_active


def import_onnxruntime() -> Any:
    """The onnxruntime module, or an error naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise missing_extra("onnxruntime", "cpu") from None
    return onnxruntime


# ONNX Runtime's load-time fusions left out on the CPU. SkipLayerNormFusion: its CPU kernel is
# slower than the residual Add + LayerNormalization it replaces, on the int8 graph and the opt
# graph alike, at the same quality (docs/decisions.md has the profile and the A/B runs). The
# plain fp32 graph has no such pair (a no-op there).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)

_preloaded = False
_env_arena = False
_env_arena_lock = threading.Lock()


def _preload_gpu_libraries(ort: Any) -> None:
    """Load CUDA/cuDNN from the nvidia-* pip packages (embedrt[gpu]) before a GPU session.

    Without it ONNX Runtime may not find them, fall back to the CPU, and the active-provider
    check fails. Once per process; a no-op on builds without preload_dlls (before 1.21).
    """
    global _preloaded
    if not _preloaded and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    _preloaded = True


def available_providers() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def default_threads() -> int:
    """CPUs this process may run on (affinity-aware, so containers and taskset are respected)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# How ONNX Runtime's intra-op threads wait for work (SessionOptions.spinning):
#   "off": they sleep between the kernels of a run and between runs;
#   "run": they spin-wait while a run is in flight and sleep once the last run returns
#          (session.force_spinning_stop): a run hands work to them hundreds of times and each
#          wake-up from sleep costs; between runs they take no CPU;
#   "on":  they spin-wait for a while after every piece of work, runs or not.
SPINNING = ("off", "run", "on")


def spinning_mode(value: object) -> str:
    """value as one of SPINNING; True and False (the option's type before "run") are "on" and
    "off"; else ConfigError."""
    if isinstance(value, bool):
        return "on" if value else "off"
    check_choice("spinning", value, SPINNING)
    return str(value)


@dataclass(frozen=True)
class SessionOptions:
    """ONNX Runtime knobs embedrt exposes.

    threads: intra-op threads, None = every CPU this process may use. On a shared host, set it
        to the cores you give this process.
    spinning: how idle intra-op threads wait, one of SPINNING. "run" by default: the single-text
        and lone-batch latency of "on" without its idle spinning, which with other work on the
        cores (a tokenizer, an event loop, another process) costs much more than it gains
        (bench/results/spinning.md, tuning.md, embed_job.md, serve_load.md). "on" for a process
        that has its cores to itself; "off" where even a run must not spin.
    """

    threads: int | None = None
    spinning: str = "run"

    def __post_init__(self) -> None:
        check_choice("spinning", self.spinning, SPINNING)


def _register_env_arena(ort: Any) -> None:
    """One CPU arena in ONNX Runtime's environment, made once per process, for the CPU
    sessions to share (session.use_env_allocators)."""
    global _env_arena
    with _env_arena_lock:
        if not _env_arena:
            info = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            ort.create_and_register_allocator(info, None)
            _env_arena = True


def ort_session_options(options: SessionOptions, device: str) -> tuple[Any, dict[str, Any]]:
    """ONNX Runtime's SessionOptions for these options, and the InferenceSession keyword
    arguments that go with them (the fusions left out on the CPU).

    Memory on the CPU (issue 20; docs/decisions.md "Activation memory"): every CPU session of
    the process allocates from one arena in ONNX Runtime's environment, so the all-thread
    session and the streams' session hold one batch's activations between them, not one each;
    and no memory patterns, which ONNX Runtime plans and keeps per input shape: with lengths
    that vary batch to batch they only reserve more than a run needs.
    """
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    if device == "cpu":
        _register_env_arena(ort)
        so.add_session_config_entry("session.use_env_allocators", "1")
        so.enable_mem_pattern = False
    so.intra_op_num_threads = options.threads or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "0" if options.spinning == "off" else "1"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if options.spinning == "run":
        so.add_session_config_entry("session.force_spinning_stop", "1")
    extra = {"disabled_optimizers": list(CPU_DISABLED_OPTIMIZERS)} if device == "cpu" else {}
    return so, extra


class Session:
    """One inference session over one ONNX variant, on the providers given."""

    def __init__(
        self,
        model: str,
        name: str,
        device: str,
        providers: list[tuple[str, dict[str, Any]]],
        options: SessionOptions,
        output: str,
        dim: int,
        tables: Mapping[str, np.ndarray] | None = None,
        folder: str = ".",
        record: str = "",
    ):
        """model: the path ONNX Runtime reads the (verified) ONNX file from; name: the file's
        name in the artifact, for messages; tables: the graph's external token tables
        (verified.verified_tables), which the session uses in place on the CPU; folder: the
        artifact directory; record: the manifest's data file and tables as the graph must
        record them (manifest.tables_record; "" for none)."""
        ort = import_onnxruntime()
        if device != "cpu":
            _preload_gpu_libraries(ort)
        so, extra = ort_session_options(options, device)
        supplied = _supply_tables(ort, so, tables or {}, folder, device)
        for _, opts in providers:
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in opts:
                    try:
                        Path(opts[key]).mkdir(parents=True, exist_ok=True)
                    except OSError as e:
                        raise ConfigError(
                            f"cannot create the TensorRT cache {opts[key]}: {e}; pass a writable "
                            "cache_dir to Encoder.load"
                        ) from None
        try:
            with model_load():  # what the load frees goes back to the OS (malloc.py)
                self._sess = ort.InferenceSession(
                    model,
                    sess_options=so,
                    providers=[name for name, _ in providers],
                    provider_options=[opts for _, opts in providers],
                    **extra,
                )
        except Exception as e:  # onnxruntime raises its own non-exported exception types
            hint = ""
            if "External data" in str(e) and not tables:
                hint = (
                    " (the graph keeps tables in a data file the manifest does not list: re-export)"
                )
            raise ModelLoadError(
                f"ONNX Runtime cannot load {name!r}: {type(e).__name__}: {e}{hint}"
            ) from None
        # On the CPU the session reads the tables in place and keeps no reference to them: they
        # must outlive it. On a GPU they were copied; the host copy goes.
        self._tables = supplied if device == "cpu" else []
        _check_graph(self._sess, name, output, dim)
        _check_tables(self._sess, name, record)
        self.active_providers: list[str] = list(self._sess.get_providers())
        check_active(device, self.active_providers)
        self.device = device
        self._output = output
        self._bind = device in ("cuda", "tensorrt")

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, *, shrink: bool = False
    ) -> np.ndarray:
        """Embeddings (float32, [rows, dim]) of one padded batch. shrink (CPU): the arena
        returns the chunks this run left free to the OS afterwards, where it would keep them for
        the next runs (ONNX Runtime's memory.enable_memory_arena_shrinkage)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if not self._bind:
            options = None
            if shrink and self.device == "cpu":
                options = import_onnxruntime().RunOptions()
                options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            return self._sess.run([self._output], feeds, options)[0]
        io = self._sess.io_binding()
        for name, array in feeds.items():
            io.bind_cpu_input(name, array)
        io.bind_output(self._output, "cuda")
        self._sess.run_with_iobinding(io)
        return io.copy_outputs_to_cpu()[0]


def _supply_tables(
    ort: Any, so: Any, tables: Mapping[str, np.ndarray], folder: str, device: str
) -> list[Any]:
    """Hand the graph's external token tables to ONNX Runtime, so it never reads the data file
    itself (by path, unverified); the values it is handed, to keep alive.

    On the CPU the session uses the arrays in place (add_initializer): no copy is made while
    the model loads, so the load's peak is not the weights plus a copy of the largest table, and
    every session of the encoder shares one table. ONNX Runtime still checks that each
    external-data reference names a file inside the model's directory, which for a model
    loaded from /proc/self/fd/N it cannot tell, so the folder is given as that directory. On a
    GPU the tables are copied into the graph before it is partitioned
    (add_external_initializers), as a provider that builds its own engine (TensorRT) expects.
    """
    if not tables:
        return []
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in tables.values()]
    if device == "cpu":
        key = "session.model_external_initializers_file_folder_path"
        so.add_session_config_entry(key, str(Path(folder).resolve()))
        for name, value in zip(tables, values, strict=True):
            so.add_initializer(name, value)
    else:
        so.add_external_initializers(list(tables), values)
    return [tables, values]


def _check_tables(sess: Any, name: str, record: str) -> None:
    """The graph records the data file and tables it was given (the export wrote the record
    into it; none for a graph that holds its tables), or ModelLoadError."""
    recorded = sess.get_modelmeta().custom_metadata_map.get(TABLES_METADATA_KEY, "")
    if recorded != record:
        raise ModelLoadError(
            f"{name!r} records its tables as {str(recorded)[:200]}; the manifest says "
            f"{record[:200]}: the manifest does not match the graph"
        )


def _check_graph(sess: Any, name: str, output: str, dim: int) -> None:
    """The graph takes what the runner feeds and gives what the manifest says, or ModelLoadError
    (a tampered manifest fails at load, named, not at the first encode)."""
    inputs = sorted(i.name for i in sess.get_inputs())
    if inputs != ["attention_mask", "input_ids"]:
        raise ModelLoadError(
            f"{name!r} takes inputs {inputs}; embedrt feeds input_ids and "
            "attention_mask: re-export the artifact"
        )
    outputs = {o.name: o.shape for o in sess.get_outputs()}
    if output not in outputs:
        raise ModelLoadError(
            f"{name!r} has no output {output!r} (it has {sorted(outputs)}); "
            "the manifest does not match the graph"
        )
    width = outputs[output][-1] if outputs[output] else None
    if isinstance(width, int) and width != dim:
        raise ModelLoadError(
            f"{name!r} outputs {width} floats per text; the manifest says dim "
            f"{dim}: the manifest does not match the graph"
        )
