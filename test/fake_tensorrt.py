"""A stand-in for the ``tensorrt`` module: just the TensorRT 10 (or 11) surface distilvpr calls.

Builder/config/network record what they were asked; ``build_serialized_network``
drives an INT8 calibrator as TensorRT does (get_batch until None, swallowing
exceptions as the pybind11 trampoline would, then write_calibration_cache).
Engines are described by I/O names, shapes and a profile.
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


class Layer:
    def __init__(self, name: str) -> None:
        self.name, self.precision, self.num_outputs, self.output_types = name, None, 1, {}

    def set_output_type(self, i: int, t: Any) -> None:
        self.output_types[i] = t


class Network:
    LAYERS = ("/backbone/conv1/Conv", "/proj/Conv", "/pool/Clip", "/pool/ReduceMax", "/pool/Div",
              "/pool/Pow", "/pool/ReduceMean", "/pool/Pow_1", "/pool/Mul")

    def __init__(self) -> None:
        self.num_inputs = self.num_outputs = 1
        self.layers = [Layer(n) for n in self.LAYERS]
        self.num_layers = len(self.layers)

    def get_input(self, i: int) -> Any:
        return types.SimpleNamespace(name="image")

    def get_layer(self, i: int) -> Layer:
        return self.layers[i]


class Config:
    """Knobs: ``accept_cache`` (set_timing_cache result), ``return_no_cache`` (get_timing_cache -> None)."""
    accept_cache = True
    return_no_cache = False

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
        self.profiles.append(p)
        return len(self.profiles) - 1

    def set_calibration_profile(self, p: Profile) -> None:
        self.calibration_profile = p


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
    """A deserialised engine: I/O names, modes, dtypes, shapes and one profile."""

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


def make_module(version: str = "10.3.0") -> types.ModuleType:
    """A fake ``tensorrt`` module; for 11.x the APIs TensorRT 11 removed are absent."""
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    for obj in (MemoryPoolType, TensorIOMode, DataType, Logger, TimingCache, Builder, OnnxParser):
        setattr(mod, obj.__name__, obj)
    mod.Runtime = object
    mod.float32 = DataType.FLOAT
    if version.split(".")[0] == "11":
        mod.BuilderFlag = enum.Enum("BuilderFlag", {"TF32": "tf32"})  # FP16/INT8/... removed
    else:
        mod.BuilderFlag = BuilderFlag
        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return mod
