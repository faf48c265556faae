"""A stand-in for the ``tensorrt`` module: just the TensorRT 10 (or 11) surface distilvpr calls.

Builder/config/network record what they were asked; ``build_serialized_network``
drives an INT8 calibrator as TensorRT does (get_batch until None, swallowing
exceptions as the pybind11 trampoline would, then write_calibration_cache).
Networks hold the layers TensorRT 10's ONNX parser makes of the student's tail
(types, output dtypes, shape tensors, the broadcast it adds for GeM's ``p``).
Engines are described by I/O names, shapes and a profile; ``Runtime``
deserialises bytes starting with ``b"engine"`` and returns None for others,
as TensorRT does for a corrupt or foreign plan.
"""
from __future__ import annotations

import enum
import types
from typing import Any


class BuilderFlag(enum.Enum):
    FP16 = "fp16"
    INT8 = "int8"
    TF32 = "tf32"
    PREFER_PRECISION_CONSTRAINTS = "prefer"


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 8


class LayerType(enum.Enum):
    CONVOLUTION = 0
    ACTIVATION = 2
    ELEMENTWISE = 6
    UNARY = 11
    SHUFFLE = 13
    REDUCE = 15
    CONSTANT = 17
    SHAPE = 23
    GATHER = 12


class Logger:
    WARNING = 2
    made = 0

    def __init__(self, severity: int) -> None:
        Logger.made += 1


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:
        self.base_initialised = True


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return b"TIMING:" + self.data


class Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
        self.shapes[name] = (lo, opt, hi)


class Tensor:
    def __init__(self, dtype: DataType = DataType.FLOAT, execution: bool = True) -> None:
        self.dtype, self.is_execution_tensor = dtype, execution


class Layer:
    def __init__(self, name: str, type: LayerType, out: Tensor | None = None) -> None:
        self.name, self.type, self.precision, self.output_types = name, type, None, {}
        self.outputs = [out or Tensor()]
        self.num_outputs = len(self.outputs)

    def get_output(self, i: int) -> Tensor:
        return self.outputs[i]

    def set_output_type(self, i: int, t: Any) -> None:
        self.output_types[i] = t


class Network:
    """The student's last backbone layers and its GeM head, as TensorRT 10's parser builds them.

    The parser names layers after ONNX nodes, but adds its own: the broadcast
    of the initializer ``pool.p`` to rank 4, and the shape arithmetic of Flatten.
    """
    LAYERS = (("/backbone/conv1/Conv", LayerType.CONVOLUTION), ("/backbone/relu/Relu", LayerType.ACTIVATION),
              ("/proj/Conv", LayerType.CONVOLUTION), ("/pool/Constant", LayerType.CONSTANT),
              ("/pool/Clip", LayerType.ACTIVATION), ("/pool/ReduceMax", LayerType.REDUCE),
              ("/pool/Div", LayerType.ELEMENTWISE), ("pool.p", LayerType.CONSTANT),
              ("ONNXTRT_Broadcast_64", LayerType.SHUFFLE), ("/pool/Pow", LayerType.ELEMENTWISE),
              ("/pool/ReduceMean", LayerType.REDUCE), ("/pool/Reciprocal", LayerType.UNARY),
              ("/pool/Constant_1", LayerType.CONSTANT), ("/pool/Mul", LayerType.ELEMENTWISE),
              ("ONNXTRT_Broadcast_67", LayerType.SHUFFLE), ("/pool/Pow_1", LayerType.ELEMENTWISE),
              ("ONNXTRT_ShapeTensorFromDims_70", LayerType.SHAPE), ("ONNXTRT_gather_71", LayerType.GATHER),
              ("/pool/Flatten", LayerType.SHUFFLE), ("/pool/Mul_1", LayerType.ELEMENTWISE))
    SHAPE_LAYERS = {"ONNXTRT_ShapeTensorFromDims_70": Tensor(DataType.INT64, execution=False),
                    "ONNXTRT_gather_71": Tensor(DataType.INT64)}

    def __init__(self) -> None:
        self.num_inputs = self.num_outputs = 1
        self.layers = [Layer(n, t, self.SHAPE_LAYERS.get(n)) for n, t in self.LAYERS]
        self.num_layers = len(self.layers)

    def get_input(self, i: int) -> Any:
        return types.SimpleNamespace(name="image")

    def get_layer(self, i: int) -> Layer:
        return self.layers[i]


class Config:
    """Knobs: ``accept_cache`` (set_timing_cache result), ``return_no_cache`` (get_timing_cache -> None),
    ``accept_profile`` (add_optimization_profile -1 if False), ``accept_calib_profile``."""
    accept_cache = True
    return_no_cache = False
    accept_profile = True
    accept_calib_profile = True

    def __init__(self) -> None:
        self.flags = {BuilderFlag.TF32}  # TensorRT 10 enables TF32 by default
        self.timing_cache: TimingCache | None = None
        self.int8_calibrator: Any = None
        self.profiles: list[Profile] = []
        self.calibration_profile: Profile | None = None
        self.pool: dict = {}

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.pool[pool] = size

    def set_flag(self, f: BuilderFlag) -> None:
        self.flags.add(f)

    def clear_flag(self, f: BuilderFlag) -> None:
        self.flags.discard(f)

    def create_timing_cache(self, data: bytes) -> TimingCache | None:
        return None if data.startswith(b"FOREIGN") else TimingCache(bytes(data))

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if not self.accept_cache:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> TimingCache | None:
        return None if self.return_no_cache else self.timing_cache

    def add_optimization_profile(self, p: Profile) -> int:
        if not self.accept_profile:
            return -1
        self.profiles.append(p)
        return len(self.profiles) - 1

    def set_calibration_profile(self, p: Profile) -> bool:
        if not self.accept_calib_profile:
            return False
        self.calibration_profile = p
        return True


class Builder:
    last: "Builder | None" = None

    def __init__(self, logger: Logger) -> None:
        self.network: Network | None = None
        self.config: Config | None = None
        self.calibrated_batches = 0
        Builder.last = self

    def create_network(self, flags: int) -> Network:
        self.network = Network()
        return self.network

    def create_builder_config(self) -> Config:
        self.config = Config()
        return self.config

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
        cal = config.int8_calibrator
        if cal is not None and cal.read_calibration_cache() is None:
            while True:
                try:
                    ptrs = cal.get_batch(["image"])
                except Exception:  # the binding swallows exceptions and reads "no more data"
                    ptrs = None
                if ptrs is None:
                    break
                self.calibrated_batches += 1
            cal.write_calibration_cache(b"CALIB-TABLE")
        return b"ENGINE-BYTES"


class OnnxParser:
    def __init__(self, network: Network, logger: Logger) -> None:
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        return True


class Engine:
    """A deserialised engine: I/O names, modes, dtypes, shapes and one profile.

    ``create_execution_context`` returns ``context_factory()``, or None (as
    TensorRT does when it cannot allocate the context's memory) without one.
    """
    context_factory: Any = None

    def __init__(self, in_shape=(-1, 3, 8, 8), out_shape=(-1, 4), profile=((1, 3, 8, 8),) * 2 + ((8, 3, 8, 8),),
                 dtype=DataType.FLOAT, outputs: int = 1) -> None:
        self.io = [("image", TensorIOMode.INPUT, in_shape)]
        self.io += [(f"descriptor{i or ''}", TensorIOMode.OUTPUT, out_shape) for i in range(outputs)]
        self.num_io_tensors = len(self.io)
        self.profile, self.dtype = profile, dtype

    def get_tensor_name(self, i: int) -> str:
        return self.io[i][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return {n: m for n, m, _ in self.io}[name]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtype

    def get_tensor_shape(self, name: str) -> tuple:
        return {n: s for n, _, s in self.io}[name]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> tuple:
        assert name == "image" and profile_index == 0
        return self.profile

    def create_execution_context(self) -> Any:
        return self.context_factory() if self.context_factory is not None else None


class Runtime:
    """Deserialises plans starting with ``b"engine"``; None for anything else."""

    def __init__(self, logger: Logger) -> None:
        pass

    def deserialize_cuda_engine(self, blob: bytes) -> Engine | None:
        return Engine() if bytes(blob).startswith(b"engine") else None


def make_module(version: str = "10.3.0") -> types.ModuleType:
    """A fake ``tensorrt`` module; for 11.x the APIs TensorRT 11 removed are absent."""
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    for obj in (MemoryPoolType, TensorIOMode, DataType, LayerType, Logger, TimingCache, Builder, OnnxParser,
                Runtime):
        setattr(mod, obj.__name__, obj)
    mod.float32, mod.float16 = DataType.FLOAT, DataType.HALF
    if version.split(".")[0] == "11":
        mod.BuilderFlag = enum.Enum("BuilderFlag", {"TF32": "tf32"})  # FP16/INT8/... removed
    else:
        mod.BuilderFlag = BuilderFlag
        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return mod
