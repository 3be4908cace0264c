"""Inference runtimes: run a backbone on a preprocessed batch, as fast as the machine allows.

Two runtimes give the same features (cosine ≥ 0.9999, tested):

- ``torch``: timm model in eval + ``inference_mode``, channels_last, CUDA when available
  (TF32 off, so GPU features match CPU fp32), ``torch.set_num_threads`` = cores on CPU.
- ``openvino``: the torch model converted once with ``ov.convert_model`` and saved as fp32 IR
  under ``semcat_home()/openvino/`` (atomic; re-used by every later process, no torch model
  needed), compiled with ``INFERENCE_PRECISION_HINT=f32``: without it CPUs with AMX/AVX-512
  silently run bf16 and features drift (cosine ≈ 0.92). The batch dimension is dynamic.

An ``int8`` spec (:mod:`semcat.quantize`) runs the quantised IR cached beside the fp32 one
(``<name>-<hash>-int8.xml``, with its calibration and parity record in ``.json``); only OpenVINO
runs it, and it must have been built first (``semcat quantize``).

``runtime="auto"`` picks torch on CUDA, else OpenVINO when installed and verified faithful for
this backbone (checked once at conversion, result stored beside the IR), else torch.
Every runtime counts the images it has inferred (``images``): tests use it to prove that
cached images are never recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semcat._io import atomic_write_text
from semcat.backbones import BackboneSpec, build_model, embedded_weights_path, torch_extra_installed
from semcat.config import compute_threads, semcat_home
from semcat.errors import SemcatError
from semcat.lite_graph import build_lite_model, read_legacy_state_dict

if TYPE_CHECKING:
    import torch

__all__ = [
    "Runtime",
    "TorchRuntime",
    "OpenVINORuntime",
    "RUNTIMES",
    "FAITHFUL_COSINE",
    "load_runtime",
    "openvino_available",
    "ir_path",
    "int8_ir_path",
    "int8_info",
    "int8_record",
    "model_input",
]

RUNTIMES = ("auto", "torch", "openvino")
FAITHFUL_COSINE = 0.9999
"""Minimum cosine between OpenVINO and torch fp32 features for ``auto`` to choose OpenVINO."""


_MAX_REQUEST = {"fp32": 2, "int8": 8}
"""Most images per OpenVINO infer request, by precision (features do not depend on it, tested):
fp32 activations are 4x int8's, and 2-image requests keep more of them in cache (10.8 against
12.0 ms of CPU per image end to end at 8, ``benchmarks/results/int8_pipeline.md``); int8 is
cheapest at 8. Either way a request's activation memory stays small (peak RSS matters for
150k-image runs)."""


class Runtime(ABC):
    """Maps a float32 batch (N,3,S,S) to float32 features (N,D); counts the images it ran."""

    name: str = ""
    device: str = "cpu"

    def __init__(self, spec: BackboneSpec) -> None:
        self.spec = spec
        self.images = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        s = self.spec.input_size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ValueError(
                f"{self.name} runtime for {self.spec.name}: expected a batch of shape (N, 3, {s}, {s}); "
                f"got {batch.shape}. Use semcat.features.preprocess to make one."
            )
        return self._run(self._infer, batch)

    def gray(self, batch: np.ndarray) -> np.ndarray:
        """Features of gray views (N, S, S) in [0, 1], what extraction hands over: the same as
        ``self(model_input(batch, spec))``, but a runtime may do the 3 channels and the mean/std
        itself (OpenVINO does, inside its compiled graph: no 3x larger batch written in numpy)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        s = self.spec.input_size
        if batch.ndim != 3 or batch.shape[1:] != (s, s):
            raise ValueError(f"{self.name} runtime for {self.spec.name}: expected gray views of shape (N, {s}, {s}); "
                             f"got {batch.shape}.")
        return self._run(self._infer_gray, batch)

    def _run(self, infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
        with self._lock:  # one batch at a time: each runtime already uses every core
            out = infer(batch) if len(batch) else np.zeros((0, self.spec.feature_dim), np.float32)
            self.calls += 1
            self.images += len(batch)
        return out

    def _infer_gray(self, batch: np.ndarray) -> np.ndarray:
        return self._infer(model_input(batch, self.spec))

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, device={self.device!r})"


class TorchRuntime(Runtime):
    """Eager PyTorch, fp32, channels_last; CUDA when available unless ``device`` is given."""

    name = "torch"

    def __init__(
        self,
        spec: BackboneSpec,
        *,
        device: str | None = None,
        channels_last: bool = True,
        threads: int | None = None,
    ) -> None:
        if not torch_extra_installed():
            raise SemcatError("--runtime torch needs torch and timm: pip install 'semcat[torch]' "
                              "(or use --runtime openvino, the default's runtime)")
        import torch

        if spec.precision != "fp32":
            raise SemcatError(f"{spec.name} at {spec.precision} runs only on OpenVINO; use --runtime openvino (or auto).")
        super().__init__(spec)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.threads = threads or compute_threads()
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(spec).to(self.device, memory_format=self._format)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self.device == "cpu" and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # process-global: another runtime may have changed it
        x = torch.from_numpy(batch).to(self.device, memory_format=self._format, non_blocking=True)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            return self.model(x).float().cpu().numpy()


class OpenVINORuntime(Runtime):
    """OpenVINO on CPU from a cached IR (fp32, or int8 for an int8 spec); ``hint`` is OpenVINO's performance hint.

    ``THROUGHPUT`` (default) runs one infer request per CPU stream and splits each batch among
    them; measured on a 2-core EPYC it beat ``LATENCY`` by ~10 % with decode threads running
    beside it (see benchmarks/features.py).
    """

    name = "openvino"

    def __init__(self, spec: BackboneSpec, *, hint: str = "THROUGHPUT", threads: int | None = None) -> None:
        import openvino as ov

        super().__init__(spec)
        self.device = "cpu"
        if spec.precision == "int8":
            int8_record(spec)
        self.ir = int8_ir_path(spec) if spec.precision == "int8" else ensure_ir(spec)
        core = ov.Core()
        n_threads = threads or compute_threads()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint,
                  "INFERENCE_NUM_THREADS": str(n_threads),
                  # OpenVINO pins its threads to the first cores: two 1-thread processes (Spark
                  # tasks) would share core 0 and run no faster than one. Pin only when this
                  # process owns every core.
                  "ENABLE_CPU_PINNING": n_threads >= (os.cpu_count() or 1)}
        self._core, self._config = core, config
        # extraction feeds gray views (:meth:`Runtime.gray`): that graph is compiled now (and load
        # errors surface here), the one for normalised 3-channel batches on first use
        self.compiled = self._compile(gray=True)
        self._queues: dict[bool, Any] = {}

    def _compile(self, *, gray: bool) -> Any:
        try:
            model = self._core.read_model(str(self.ir))
            return self._core.compile_model(gray_input_model(model, self.spec) if gray else model, "CPU", self._config)
        except Exception as e:
            raise SemcatError(
                f"{self.ir}: OpenVINO could not load the converted model ({str(e)[:200]}); delete "
                f"{self.ir.parent} to reconvert, or use --runtime torch."
            ) from None

    def _queue(self, gray: bool) -> Any:
        """The infer-request queue of the graph for gray views or for normalised batches."""
        if gray not in self._queues:
            import openvino as ov

            compiled = self.compiled if gray else self._compile(gray=False)
            n = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._queues[gray] = ov.AsyncInferQueue(compiled, n)
        return self._queues[gray]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self._run_queue(self._queue(gray=False), batch)

    def _infer_gray(self, batch: np.ndarray) -> np.ndarray:
        return self._run_queue(self._queue(gray=True), batch[:, None])

    def _run_queue(self, queue: Any, batch: np.ndarray) -> np.ndarray:
        out = np.empty((len(batch), self.spec.feature_dim), np.float32)
        most = _MAX_REQUEST[self.spec.precision]
        n_parts = min(len(batch), max(len(queue), -(-len(batch) // most)))
        parts = np.array_split(np.arange(len(batch)), n_parts)

        def done(request, rows: np.ndarray) -> None:
            out[rows] = request.get_output_tensor(0).data.reshape(len(rows), -1)

        queue.set_callback(done)
        for rows in parts:  # share_inputs: the requests read the batch in place (it outlives wait_all)
            queue.start_async({0: batch[rows[0]: rows[-1] + 1]}, rows, share_inputs=True)
        queue.wait_all()
        return out


def model_input(gray: np.ndarray, spec: BackboneSpec) -> np.ndarray:
    """Gray views (V, S, S) in [0, 1] → the network's input (V, 3, S, S), normalised with the spec's mean/std."""
    out = np.empty((gray.shape[0], 3, *gray.shape[1:]), np.float32)
    for c in range(3):
        np.subtract(gray, spec.mean[c], out=out[:, c])
        out[:, c] *= 1.0 / spec.std[c]
    return out


def gray_input_model(model: Any, spec: BackboneSpec) -> Any:
    """``model`` (input: normalised (N, 3, S, S)) with gray views (N, 1, S, S) in [0, 1] as its input:
    :func:`model_input`'s arithmetic (float32 subtract, then multiply by 1/std) as graph nodes, so
    OpenVINO broadcasts the channels and normalises inside its own threads."""
    import openvino as ov
    import openvino.opset13 as ops

    s = spec.input_size
    gray = ops.parameter([-1, 1, s, s], np.float32, name="gray")
    mean = np.array(spec.mean, np.float32).reshape(1, 3, 1, 1)
    scale = np.array([1.0 / v for v in spec.std], np.float32).reshape(1, 3, 1, 1)
    x = ops.multiply(ops.subtract(gray, ops.constant(mean)), ops.constant(scale))
    (param,) = model.get_parameters()
    for target in param.output(0).get_target_inputs():
        target.replace_source_output(x.output(0))
    return ov.Model(model.get_results(), [gray], model.get_friendly_name())


def openvino_available() -> bool:
    """True when the ``openvino`` package imports."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def ir_path(spec: BackboneSpec) -> Path:
    """Where the converted OpenVINO IR of this backbone lives (one per spec signature)."""
    import openvino as ov

    spec = replace(spec, precision="fp32")
    h = hashlib.sha256(f"{spec.signature()}|ov={ov.get_version()}".encode()).hexdigest()[:16]
    return semcat_home() / "openvino" / f"{spec.name}-{h}.xml"


def int8_ir_path(spec: BackboneSpec) -> Path:
    """Where :mod:`semcat.quantize` keeps the int8 IR of this backbone: beside the fp32 IR."""
    fp32 = ir_path(spec)
    return fp32.with_name(f"{fp32.stem}-int8.xml")


def int8_info(spec: BackboneSpec) -> dict | None:
    """The int8 IR's record (calibration key, parity to fp32), or None when it is not built."""
    if not openvino_available():  # --precision auto must still work (as fp32) without OpenVINO
        return None
    xml = int8_ir_path(spec)
    try:
        if xml.exists() and xml.with_suffix(".bin").exists():
            return dict(json.loads(xml.with_suffix(".json").read_text()))
    except (OSError, ValueError):
        pass
    return None


def int8_record(spec: BackboneSpec) -> dict:
    """:func:`int8_info`, or a :class:`SemcatError` saying how to build the int8 model."""
    info = int8_info(spec)
    if info is None:
        raise SemcatError(
            f"no int8 model of {spec.name} on this machine yet: build it once with `semcat quantize "
            f"--backbone {spec.name}` (or semcat.quantize.quantize_backbone), or use --precision fp32."
        )
    return info


def ensure_ir(spec: BackboneSpec) -> Path:
    """Build the fp32 IR once (atomic: .bin, check .json, then .xml last).

    The embedded EfficientNet-Lite weights become a graph without torch (:mod:`semcat.lite_graph`);
    other backbones are converted from their torch model. Where torch is installed the IR's
    features are compared with the torch model's and the cosine is stored in the check file.
    """
    spec = replace(spec, precision="fp32")
    xml = ir_path(spec)
    if xml.exists() and xml.with_suffix(".bin").exists() and xml.with_suffix(".json").exists():
        return xml
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    example = _probe_batch(spec)
    if is_lite_graph(spec):
        ov_model = build_lite_model(read_legacy_state_dict(embedded_weights_path(spec.weights)), spec.input_size)
        builder = "semcat.lite_graph"
    else:
        ov_model = _convert_torch(spec, example)
        builder = "openvino.convert_model"
    tmp = xml.with_name(f".{xml.stem}.{os.getpid()}.{threading.get_ident()}.tmp.xml")
    ov.save_model(ov_model, str(tmp), compress_to_fp16=False)  # fp16 weights would drift features
    compiled = ov.Core().compile_model(str(tmp), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(example)[0]
    check: dict = {"signature": spec.signature(), "builder": builder, "openvino": ov.get_version()}
    if torch_extra_installed():
        ref = _torch_features(spec, example)
        check.update(cosine=_min_cosine(ref, got), max_abs=float(np.abs(ref - got).max()))
    else:  # the lite graph is checked against torch by the test suite (tests/test_lite_graph.py)
        check.update(cosine=None, reference="none here: torch is not installed")
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    atomic_write_text(xml.with_suffix(".json"), json.dumps(check, indent=1))
    os.replace(tmp, xml)
    return xml


def is_lite_graph(spec: BackboneSpec) -> bool:
    """Whether this backbone's IR is built by :mod:`semcat.lite_graph` (embedded Lite weights)."""
    return spec.weights.startswith("embedded:") and spec.timm_name.startswith("tf_efficientnet_lite")


def _convert_torch(spec: BackboneSpec, example: np.ndarray) -> Any:
    if not torch_extra_installed():
        raise SemcatError(f"backbone {spec.name} needs torch and timm: pip install 'semcat[torch]'")
    import openvino as ov
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace deprecation noise inside convert_model
        ov_model = ov.convert_model(build_model(spec), example_input=torch.from_numpy(example[:1]))
    ov_model.reshape([-1, 3, spec.input_size, spec.input_size])
    return ov_model


def _torch_features(spec: BackboneSpec, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return build_model(spec)(torch.from_numpy(batch)).numpy()


def is_faithful(spec: BackboneSpec) -> bool:
    """Whether OpenVINO reproduced torch fp32 features for this backbone at conversion time."""
    data = json.loads(ensure_ir(spec).with_suffix(".json").read_text())
    if data.get("cosine") is None:  # built without torch: faithful by construction, tested in CI
        return data.get("builder") == "semcat.lite_graph"
    return float(data["cosine"]) >= FAITHFUL_COSINE


def load_runtime(spec: BackboneSpec, runtime: str | Runtime = "auto") -> Runtime:
    """The runtime to use: an instance passes through; names are cached per process."""
    if isinstance(runtime, Runtime):
        return runtime
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}.")
    choice = _auto_choice(spec) if runtime == "auto" else runtime
    return _cached_runtime(spec, choice, compute_threads())


@lru_cache(maxsize=4)
def _cached_runtime(spec: BackboneSpec, runtime: str, threads: int) -> Runtime:
    if runtime == "openvino":
        if not openvino_available():
            raise SemcatError("--runtime openvino needs the openvino package: pip install openvino")
        rt: Runtime = OpenVINORuntime(spec, threads=threads)
        if spec.precision == "fp32" and not is_faithful(spec):
            warnings.warn(
                f"OpenVINO features for {spec.name} differ from torch fp32 (cosine < {FAITHFUL_COSINE}); "
                "use --runtime torch for exact features.", stacklevel=3,
            )
        return rt
    return TorchRuntime(spec, threads=threads)


def _auto_choice(spec: BackboneSpec) -> str:
    if spec.precision == "int8":
        return "openvino"
    if _cuda_available() or "openvino" not in spec.runtimes or not openvino_available():
        return "torch"
    return "openvino" if is_faithful(spec) else "torch"


def planned_runtime(spec: BackboneSpec) -> str:
    """What ``auto`` would pick for this backbone, without converting or loading anything (for doctor)."""
    if _cuda_available():
        return "torch (CUDA)"
    if "openvino" not in spec.runtimes or not openvino_available():
        return "torch (CPU)"
    check = ir_path(spec).with_suffix(".json")
    if not check.exists():
        return "openvino (IR converted on first use)"
    cosine = json.loads(check.read_text()).get("cosine")
    if cosine is None:
        return "openvino (Lite graph built without torch)"
    return f"openvino (cosine {cosine:.6f} to torch)" if cosine >= FAITHFUL_COSINE else "torch (OpenVINO IR not faithful)"


def _cuda_available() -> bool:
    """Whether torch can use a CUDA GPU, without importing torch on a machine that has none.

    Importing a CUDA build of torch maps ~480 MiB of libraries into the process: with the IR
    cached, an OpenVINO run never needs torch, and peak memory is about half without it.
    """
    if not torch_extra_installed():
        return False
    if sys.modules.get("torch") is None and sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"):
        return False
    import torch

    return torch.cuda.is_available()


def _probe_batch(spec: BackboneSpec) -> np.ndarray:
    """A fixed, image-like batch (smooth gradients + noise) for conversion and the fidelity check."""
    s = spec.input_size
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:s, 0:s] / s
    base = np.stack([np.sin(6 * xx + 3 * yy), np.cos(4 * yy), xx * yy * 2 - 1])
    return (base[None] + 0.3 * rng.standard_normal((2, 3, s, s))).astype(np.float32)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
    return float((num / den).min())
