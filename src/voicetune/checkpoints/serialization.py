"""Pickle-free serialization: nested state -> safetensors (tensors) + JSON (everything else).

A checkpoint never holds a pickle, so loading one can never run code. `split_tree` walks a nested
state (an optimizer's state_dict, RNG states, loop counters) and replaces every tensor or numpy
array with a reference into a flat tensor dict; `join_tree` puts them back. Only plain JSON types,
tuples, dicts with int keys, tensors and arrays are accepted: anything else is a TypeError rather
than a silent pickle.

`write_safetensors` streams the safetensors format itself so that each tensor's bytes are written
and hashed in one pass with no extra copy; files it writes load with the `safetensors` library.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Any, BinaryIO

import numpy as np
import torch

_TENSOR, _ARRAY, _TUPLE, _DICT, _FLOAT = "__tensor__", "__ndarray__", "__tuple__", "__dict__", "__float__"
_MARKERS = {_TENSOR, _ARRAY, _TUPLE, _DICT, _FLOAT}

SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


def split_tree(tree: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Separate tensors from a nested structure: (JSON-able tree with references, tensors by key)."""
    tensors: dict[str, torch.Tensor] = {}

    def encode(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node
            return {_TENSOR: path}
        if isinstance(node, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(node))
            return {_ARRAY: path}
        if isinstance(node, np.generic):
            return encode(node.item(), path)
        if isinstance(node, float):
            return node if math.isfinite(node) else {_FLOAT: repr(node)}
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if isinstance(node, tuple):
            return {_TUPLE: [encode(v, f"{path}/{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [encode(v, f"{path}/{i}") for i, v in enumerate(node)]
        if isinstance(node, dict):
            if all(isinstance(k, str) and k not in _MARKERS for k in node):
                return {k: encode(v, f"{path}/{k}") for k, v in node.items()}
            return {
                _DICT: [
                    [encode(k, f"{path}/key{i}"), encode(v, f"{path}/{k}")] for i, (k, v) in enumerate(node.items())
                ]
            }
        raise TypeError(f"cannot store {type(node).__name__} at {path or '/'} without pickle")

    return encode(tree, prefix), tensors


def join_tree(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `split_tree`."""

    def decode(node: Any) -> Any:
        if isinstance(node, list):
            return [decode(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == _TENSOR:
                return tensors[value]
            if key == _ARRAY:
                return tensors[value].numpy()
            if key == _TUPLE:
                return tuple(decode(v) for v in value)
            if key == _DICT:
                return {decode(k): decode(v) for k, v in value}
            if key == _FLOAT:
                return float(value)
        return {k: decode(v) for k, v in node.items()}

    return decode(tree)


def json_bytes(obj: Any) -> bytes:
    """Deterministic, strict JSON (no NaN literals: split_tree encodes them)."""
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor, without copying when it is already contiguous on CPU."""
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy()).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers; numpy's stubs do not say so


def safetensors_header(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> tuple[bytes, list[str]]:
    """The 8-byte length + JSON header, and the order in which tensor data follows it."""
    order = sorted(tensors)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in SAFETENSORS_DTYPES:
            raise TypeError(f"tensor {name}: dtype {t.dtype} has no safetensors code")
        nbytes = t.numel() * t.element_size()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the reference writer aligns tensor data to 8 bytes
    return struct.pack("<Q", len(raw)) + raw, order


def safetensors_size(tensors: dict[str, torch.Tensor]) -> int:
    header, _ = safetensors_header(tensors)
    return len(header) + sum(t.numel() * t.element_size() for t in tensors.values())


class HashingWriter:
    """Writes bytes to a file while computing their sha256 and counting them.

    With a `hasher` thread pool, large buffers are hashed on another core while they are being
    written (hashlib and file writes both release the GIL), so hashing adds almost no time.
    """

    PARALLEL_MIN_BYTES = 1 << 20

    def __init__(self, handle: BinaryIO, hasher=None):
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._hasher = hasher

    def write(self, data: bytes | memoryview) -> None:
        if self._hasher is not None and len(data) >= self.PARALLEL_MIN_BYTES:
            hashing = self._hasher.submit(self.sha256.update, data)
            self.handle.write(data)
            hashing.result()
        else:
            self.handle.write(data)
            self.sha256.update(data)
        self.size += len(data)


def write_safetensors(
    writer: HashingWriter, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Stream `tensors` in safetensors format through `writer`."""
    header, order = safetensors_header(tensors, metadata)
    writer.write(header)
    for name in order:
        if tensors[name].numel():
            writer.write(tensor_bytes(tensors[name]))


_DTYPES_BY_CODE = {code: dtype for dtype, code in SAFETENSORS_DTYPES.items()}


def safetensors_views(data: memoryview) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file's bytes (already verified against the manifest), as views of
    `data` without a copy; a tensor whose offset does not suit its alignment is copied."""
    (header_len,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(bytes(data[8 : 8 + header_len]))
    start = 8 + header_len
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES_BY_CODE[info["dtype"]]
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if count == 0:
            tensors[name] = torch.empty(info["shape"], dtype=dtype)
            continue
        element = torch.empty((), dtype=dtype).element_size()
        if end - begin != count * element:
            raise ValueError(f"safetensors entry {name}: {end - begin} bytes for {count} x {dtype}")
        if (start + begin) % element:
            chunk = bytearray(data[start + begin : start + end])
            tensors[name] = torch.frombuffer(chunk, dtype=dtype).reshape(info["shape"])
        else:
            tensors[name] = torch.frombuffer(data, dtype=dtype, count=count, offset=start + begin).reshape(
                info["shape"]
            )
    return tensors
