"""Read PyTorch checkpoints without PyTorch: zip archives (``torch.save`` ≥ 1.6 and TorchScript
``torch.jit.save``, e.g. OpenAI's ``RN50.pt``) and the legacy (pre-1.6) pickle format.

Tensors become numpy arrays rebuilt from the archive's storage records (dtype, offset, size,
stride); float16 stays float16 unless the caller casts. TorchScript modules (``__torch__.*``
classes) are unpickled into :class:`ScriptObject` stubs and flattened into a state dict by
attribute path, which is what ``scripted.state_dict()`` returns (plus tensor attributes that are
not parameters/buffers, such as scalar ``input_resolution``; converters drop what they do not map).
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}
_SCALAR_DTYPES = {"float64": "DoubleStorage", "float32": "FloatStorage", "float16": "HalfStorage",
                  "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage",
                  "uint8": "ByteStorage", "bool": "BoolStorage", "bfloat16": "BFloat16Storage",
                  "double": "DoubleStorage", "float": "FloatStorage", "half": "HalfStorage", "long": "LongStorage",
                  "int": "IntStorage"}


_SAFE_MODULES = {"collections", "numpy", "numpy.core.multiarray", "numpy._core.multiarray"}
_SAFE_GLOBALS = {("builtins", n) for n in ("set", "frozenset", "slice", "complex", "bytearray", "dict", "list",
                                             "tuple", "int", "float", "str", "bool", "bytes")} | {("_codecs", "encode")}


class StorageType:
    """Stand-in for ``torch.FloatStorage`` & co. and for ``torch.float32`` & co."""

    def __init__(self, name: str):
        self.name = name

    @property
    def dtype(self):
        return _STORAGE_DTYPES[self.name]

    def __repr__(self):
        return f"StorageType({self.name})"


class ScriptObject:
    """A TorchScript object (``__torch__.<qualified name>``): its pickled state in ``state``."""

    qualname = "__torch__"

    def __init__(self, *args):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<ScriptObject {self.qualname}>"


def _decode(raw: bytes, dtype) -> np.ndarray:
    if dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    size, stride = tuple(size), tuple(stride)
    if not size:
        return storage[storage_offset:storage_offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=tuple(s * storage.itemsize for s in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *unused):
    return data


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)


def _identity(x, *unused):
    return x


class _Unpickler(pickle.Unpickler):
    """Unpickler that maps the torch globals it meets onto numpy-producing stand-ins."""

    _FUNCS = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.jit._pickle", "build_intlist"): _identity,
        ("torch.jit._pickle", "build_doublelist"): _identity,
        ("torch.jit._pickle", "build_boollist"): _identity,
        ("torch.jit._pickle", "build_tensorlist"): _identity,
        ("torch.jit._pickle", "build_tensor_from_id"): _identity,
        ("torch.jit._pickle", "restore_type_tag"): _identity,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch", "Size"): tuple,
    }

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in self._FUNCS:
            return self._FUNCS[(module, name)]
        if module.startswith("__torch__"):
            return type(name, (ScriptObject,), {"qualname": f"{module}.{name}"})
        if module == "torch" and (name in _STORAGE_DTYPES or name in _SCALAR_DTYPES):
            return StorageType(name if name in _STORAGE_DTYPES else _SCALAR_DTYPES[name])
        if module == "torch" and name == "device":
            return str
        if module.split(".")[0] == "torch":
            raise pickle.UnpicklingError(f"unsupported PyTorch object {module}.{name} in the checkpoint")
        if (module, name) in _SAFE_GLOBALS or module in _SAFE_MODULES:
            return super().find_class(module, name)
        # anything else (mmcv/detectron2 objects in a checkpoint's meta, ...) becomes an inert stub:
        # no arbitrary import or call happens while reading a checkpoint
        return type(name, (ScriptObject,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], str(pid[2])
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self._storages:
            dtype = storage_type.dtype if isinstance(storage_type, StorageType) else np.uint8
            self._storages[key] = self._load_storage(key, dtype)
        storage = self._storages[key]
        if len(pid) > 5 and pid[5] is not None:  # legacy view: (view key, offset, size)
            _, offset, size = pid[5]
            return storage[offset:offset + size]
        return storage


def _read_zip(path) -> object:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        data_pkl = next((n for n in names if n.endswith("data.pkl") and n.count("/") == 1), None)
        if data_pkl is None:
            raise ValueError(f"{path}: zip archive without <root>/data.pkl; not a PyTorch checkpoint")
        root = data_pkl.rsplit("/", 1)[0]

        def load_storage(key, dtype):
            return _decode(zf.read(f"{root}/data/{key}"), dtype)

        return _Unpickler(io.BytesIO(zf.read(data_pkl)), load_storage).load()


def _read_legacy(path) -> object:
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        pickle.load(f)   # protocol version
        pickle.load(f)   # sys info
        pending = {}

        def load_storage(key, dtype):
            pending[key] = np.dtype(dtype) if dtype != "bfloat16" else dtype
            return _LazyStorage(key)

        unpickler = _Unpickler(f, load_storage)
        # storages are stored after the object pickle: rebuild tensors lazily, then resolve
        tensors = []
        unpickler._FUNCS = dict(_Unpickler._FUNCS)
        for k in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
            unpickler._FUNCS[k] = lambda *a: tensors.append(_LazyTensor(*a)) or tensors[-1]
        obj = unpickler.load()
        keys = pickle.load(f)
        storages = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = pending[key]
            itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            storages[key] = _decode(f.read(numel * itemsize), dtype)
    return _resolve(obj, storages)


class _LazyStorage:
    def __init__(self, key, offset=0, size=None):
        self.key, self.offset, self.size = key, offset, size

    def __getitem__(self, sl):
        return _LazyStorage(self.key, self.offset + (sl.start or 0), (sl.stop or 0) - (sl.start or 0))


class _LazyTensor:
    def __init__(self, storage, offset, size, stride, *unused):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def build(self, storages):
        arr = storages[self.storage.key][self.storage.offset:]
        return _rebuild_tensor(arr, self.offset, self.size, self.stride)


def _resolve(obj, storages):
    if isinstance(obj, _LazyTensor):
        return obj.build(storages)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, storages)) for k, v in obj.items()) if isinstance(obj, OrderedDict) \
            else {k: _resolve(v, storages) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, storages) for v in obj)
    return obj


def load_torch_file(path) -> object:
    """Unpickle a PyTorch ``.pt``/``.pth`` (zip, TorchScript or legacy) into numpy-based objects."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    return _read_legacy(path)


def script_state_dict(obj: ScriptObject, prefix: str = "") -> "OrderedDict[str, np.ndarray]":
    """Flatten a TorchScript module stub into ``{attribute.path: array}``."""
    out = OrderedDict()
    state = obj.state
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]
    if not isinstance(state, dict):
        return out
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            out[prefix + name] = value
        elif isinstance(value, ScriptObject):
            out.update(script_state_dict(value, f"{prefix}{name}."))
    return out


def find_state_dict(obj) -> "OrderedDict[str, np.ndarray]":
    """The state dict inside a loaded checkpoint: a TorchScript module, a plain state dict, or a
    dict holding one under ``state_dict`` / ``model`` (mmdet/detectron2 checkpoints). A
    ``module.`` prefix (DataParallel) is removed."""
    if isinstance(obj, ScriptObject):
        return script_state_dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                return find_state_dict(obj[key])
        sd = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, np.ndarray))
        if sd and all(k.startswith("module.") for k in sd):
            sd = OrderedDict((k[len("module."):], v) for k, v in sd.items())
        return sd
    raise ValueError(f"no state dict found in a checkpoint of type {type(obj).__name__}")
