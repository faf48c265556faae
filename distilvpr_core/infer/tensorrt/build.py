"""Build a TensorRT 10 engine from the exported ONNX (fp32 / fp16 / int8), with a timing cache.

TensorRT is imported lazily; without it, or with another major version, every
entry point raises a UserError with the exact install command.  No torch.

Only TensorRT 10 is supported.  TensorRT 11 removed what this builder uses
(``BuilderFlag.FP16/INT8``, ``IInt8EntropyCalibrator2``, ``int8_calibrator``,
``platform_has_fast_fp16``): it builds strongly typed networks only, so fp16
must be cast into the ONNX graph and INT8 must come as explicit Q/DQ nodes
(NVIDIA ModelOpt).  JetPack 6 (the Orin target) ships TensorRT 10.3 and TensorRT
11 does not support JetPack, so an 11 path would be unused on robots and
untested here; the gate below refuses 11 instead of crashing mid-build.

INT8 uses implicit quantisation with an ``IInt8EntropyCalibrator2`` (calibrator.py) fed by the
shared preprocessing on real frames (directory or dataset traversal); its
table is keyed on the ONNX bytes and the calibration set (``calib_table_name``).
A calibration error is re-raised after the build (the binding would otherwise
read it as "end of data"; Ctrl-C stays a KeyboardInterrupt), and zero batches
are refused.  fp32 engines clear TF32; fp16/int8 engines pin the GeM head (every
float layer after the last convolution) to fp32.  Dynamic batch: one
optimisation profile (min, opt, max) x 3 x H x W; a profile or calibration
profile TensorRT rejects is an error, not a silent default.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...foundation.atomic import write_bytes_atomic
from ...foundation.errors import UserError
from .calibration import CalibrationSource, iter_batches
from ...foundation.contract import PreprocessContract
from .engine_key import BuildRecipe, EngineSpec, GpuFacts, build_recipe
from .calibrator import device_uploader, make_calibrator

log = logging.getLogger(__name__)

SUPPORTED_MAJOR = 10
INSTALL_HINT = ("install TensorRT 10 -- x86_64: pip install \"tensorrt-cu12>=10.3,<11\" (CUDA 12 driver) "
                "or \"tensorrt-cu13>=10.14,<11\" (CUDA 13), plus \"cuda-python\" of the same CUDA major; "
                "Jetson: JetPack 6.x (TensorRT 10.3: sudo apt install nvidia-tensorrt python3-libnvinfer); "
                "or use backend='onnxruntime'")
# Everything this package calls that is not in every TensorRT (11 removed the first ones).
REQUIRED_API = ("BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.TF32",
                "BuilderFlag.PREFER_PRECISION_CONSTRAINTS", "IInt8EntropyCalibrator2",
                "MemoryPoolType.WORKSPACE", "TensorIOMode.INPUT", "Builder", "Runtime", "OnnxParser",
                "Logger")

_LOGGER: Any = None


def check_tensorrt(trt: Any) -> None:
    """UserError unless ``trt`` is a TensorRT 10 with every API this package uses."""
    version = str(getattr(trt, "__version__", "?"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = -1
    if major != SUPPORTED_MAJOR:
        why = ("TensorRT 11 builds strongly typed networks only and removed BuilderFlag.FP16/INT8 and "
               "the INT8 calibrator this package uses" if major > SUPPORTED_MAJOR else "too old")
        raise UserError(f"TensorRT {version} found ({why}); this package supports TensorRT "
                        f"{SUPPORTED_MAJOR}.x only: {INSTALL_HINT}")
    missing = []
    for dotted in REQUIRED_API:
        obj = trt
        for part in dotted.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(dotted)
    if missing:
        raise UserError(f"TensorRT {version} lacks {missing} (a lean/dispatch-only runtime?); "
                        f"{INSTALL_HINT}")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, checked by :func:`check_tensorrt`; UserError with the install hint if it
    is missing or not a supported TensorRT 10."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(f"TensorRT is not installed (python package 'tensorrt'); {INSTALL_HINT}") from None
    check_tensorrt(trt)
    return trt


def trt_logger(trt: Any) -> Any:
    """The one TensorRT logger of this process (builder, runtime and parser share it)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def current_facts(device: int = 0) -> GpuFacts:
    """The real TensorRT version and GPU of this machine."""
    from .cuda_mem import gpu_properties

    trt = import_tensorrt()
    p = gpu_properties(device)
    return GpuFacts(trt.__version__, p.name, p.compute_capability, p.sm_count, p.total_memory_mib)


def _set_timing_cache(config: Any, tc_path: Path | None) -> None:
    """Attach the timing cache at ``tc_path`` (or an empty one if it is unusable)."""
    data = b""
    if tc_path is not None and tc_path.is_file():
        data = tc_path.read_bytes()
    cache = config.create_timing_cache(data) if data else None
    if cache is None or not config.set_timing_cache(cache, False):
        if data:
            log.warning("%s: timing cache unusable here (another TensorRT or GPU?); starting a new one",
                        tc_path)
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            log.warning("TensorRT refused an empty timing cache; building without one")


def _save_timing_cache(config: Any, tc_path: Path | None) -> None:
    """Write the builder's timing cache; a failure costs only the next build's tuning time."""
    if tc_path is None:
        return
    try:
        cache = config.get_timing_cache()
        blob = cache.serialize() if cache is not None else None
        if blob is None:
            log.warning("%s: TensorRT returned no timing cache; not saved", tc_path)
            return
        write_bytes_atomic(tc_path, bytes(memoryview(blob)))
    except (OSError, RuntimeError) as exc:
        log.warning("%s: timing cache not saved (%s)", tc_path, exc)


def _pinnable(trt: Any, layer: Any) -> bool:
    """Whether a precision constraint means anything for ``layer`` (Polygraphy's rule).

    Not for constants (their weights carry their own type; TensorRT folds them
    into the consumer, which is pinned), nor for layers with a shape-tensor or
    non-float output (shape arithmetic, casts to int, gathers of dimensions).
    """
    if layer.type == trt.LayerType.CONSTANT:
        return False
    floats = (trt.float32, trt.float16)
    for j in range(layer.num_outputs):
        out = layer.get_output(j)
        if not out.is_execution_tensor or out.dtype not in floats:
            return False
    return True


def pin_pool_layers_fp32(trt: Any, network: Any) -> list[str]:
    """Run the GeM head in fp32 (outputs too); returns the names of the layers pinned.

    The head is found by position, not by name: every layer after the
    network's last convolution (the student's 1x1 projection), in the
    parser's topological order.  Names would miss the layers TensorRT adds
    itself, such as the broadcast of GeM's ``p`` (``ONNXTRT_Broadcast...``),
    whose fp16 rounding shifts every descriptor.  Constants and shape/integer
    layers are skipped (``_pinnable``).
    """
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    convs = [i for i, layer in enumerate(layers) if layer.type == trt.LayerType.CONVOLUTION]
    if not convs:
        log.warning("no convolution in the network: no GeM head found to pin to fp32")
        return []
    pinned = []
    for layer in layers[convs[-1] + 1:]:
        if not _pinnable(trt, layer):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(str(layer.name))
    return pinned


def calib_table_name(stem: str, spec: EngineSpec, recipe: BuildRecipe) -> str:
    """``<stem>-<key>.calib``: the default INT8 table name, keyed on content, never on a path alone.

    The ONNX sha256, the calibration set's digest and the calibration batch
    decide the scales, so a retrained model at the same path, or another
    calibration set, gets a new table instead of the old scales.
    """
    h = hashlib.sha256(f"{spec.onnx_sha256}\n{spec.calib_digest}\n{recipe.calib_batch}\n".encode())
    return f"{stem}-{h.hexdigest()[:20]}.calib"


def _no_buffer() -> None:
    """``free`` of a build without a calibration buffer."""


def build_engine(onnx_path: str | Path, spec: EngineSpec, contract: PreprocessContract,
                 recipe: BuildRecipe | None = None, timing_cache: str | Path | None = None,
                 calib: CalibrationSource | None = None, calib_cache: str | Path | None = None,
                 trt: Any = None,
                 uploader: Callable[[int], tuple[Callable[[np.ndarray], int], Callable[[], None]]]
                 | None = None) -> bytes:
    """Serialised engine bytes for ``onnx_path`` as ``spec`` and ``recipe`` ask.

    ``timing_cache``: file read before and written (atomically) after the
    build, so rebuilds for the same GPU skip kernel timing; a foreign or
    broken one is replaced, and never costs the engine.  ``calib_cache``: the
    INT8 table (default beside the ONNX, named by ``calib_table_name``).  Raises UserError for
    parse errors (with the parser's messages), a failed build, or a failed
    calibration.  ``trt``/``uploader`` are injected by tests.
    """
    trt = trt or import_tensorrt()
    recipe = recipe or build_recipe(spec.precision)
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT cannot parse it: {errs}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise UserError(f"{onnx_path}: expected one input and one output, TensorRT sees "
                        f"{network.num_inputs} and {network.num_outputs}")
    inp = network.get_input(0)
    h, w = spec.input_hw
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.workspace_mb << 20)
    tc_path = Path(timing_cache) if timing_cache else None
    _set_timing_cache(config, tc_path)

    lo, opt, hi = spec.batch
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))
    if config.add_optimization_profile(profile) < 0:  # -1: TensorRT found the profile invalid
        raise UserError(f"{onnx_path}: TensorRT rejected the optimisation profile batch {spec.batch} x "
                        f"3 x {h} x {w} for input {inp.name!r}; check max_batch and the model's input")

    if not recipe.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: "fp32" would be TF32 on Ampere+
    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if recipe.pool_fp32 and pin_pool_layers_fp32(trt, network):
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)

    calibrator = None
    free = _no_buffer  # fp engines hold no calibration buffer
    if spec.precision == "int8":
        if calib is None:
            raise UserError("precision int8 needs calibration images (--calib)")
        cfile = (Path(calib_cache) if calib_cache
                 else Path(onnx_path).with_name(calib_table_name(Path(onnx_path).stem, spec, recipe)))
        b = recipe.calib_batch
        config.set_flag(trt.BuilderFlag.INT8)
        cprof = builder.create_optimization_profile()  # calibration runs at one fixed shape
        cshape = (b, 3, h, w)
        cprof.set_shape(inp.name, cshape, cshape, cshape)
        if not config.set_calibration_profile(cprof):
            raise UserError(f"{onnx_path}: TensorRT rejected the INT8 calibration profile {list(cshape)}; "
                            "check the calibration batch (calib_batch)")
        upload, free = (uploader or device_uploader)(b * 3 * h * w * 4)
    try:  # from here on the calibration buffer is freed however the build ends
        if spec.precision == "int8":
            batches = (x for x in iter_batches(calib, contract, b) if len(x) == b)
            calibrator = make_calibrator(trt, batches, b, cfile, upload)
            config.int8_calibrator = calibrator
        serialized = builder.build_serialized_network(network, config)
    finally:
        free()
    if calibrator is not None and calibrator.error is not None:
        cfile.unlink(missing_ok=True)
        err = calibrator.error
        if isinstance(err, UserError) or not isinstance(err, Exception):
            raise err  # a UserError says it all; Ctrl-C (KeyboardInterrupt) must stay one
        raise UserError(f"{onnx_path}: INT8 calibration failed after {calibrator.batches_fed} batches: "
                        f"{type(err).__name__}: {err}").with_traceback(err.__traceback__)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT engine build failed ({spec.precision}); see the "
                        "TensorRT log above")
    blob = bytes(memoryview(serialized))  # the engine is safe before the timing cache is touched
    _save_timing_cache(config, tc_path)
    return blob
