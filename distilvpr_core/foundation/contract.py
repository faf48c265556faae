"""The preprocessing contract: how a camera frame becomes the model's input.

It travels with the model (ONNX ``metadata_props``, checkpoint, map
``schema.json``) so every backend, the training pipeline and the map builder
feed the network identically.  Frozen and validated on construction: a bad
value names the key and the source (file) it came from.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .errors import UserError

CONTRACT_FORMAT = "distilvpr-preprocess"
CONTRACT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# stretch: resize to W x H ignoring aspect.  center_crop: scale so the frame
# covers W x H, then cut the centre (no distortion; equals stretch when the
# aspect ratios match, e.g. 640x480 -> 320x240).
RESIZE_POLICIES = ("stretch", "center_crop")
# area: box-average by the integer part of the scale (PIL reduce), then
# bilinear for the rest -- alias-free and ~5x faster than an exact antialiased
# bilinear on a 2x shrink (0.5 ms vs 2.5 ms for 640x480 -> 320x240 here).
INTERPOLATIONS = ("area", "bilinear", "bicubic", "nearest")
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class PreprocessContract:
    """What the network expects.

    input_size: (W, H) pixels of the network input.
    resize: one of :data:`RESIZE_POLICIES`; interpolation: one of
    :data:`INTERPOLATIONS` (all but nearest antialias when shrinking).
    channel_order: channel order the *network* expects; inputs are always RGB.
    mean, std: per channel, applied after scaling uint8 to [0, 1].
    descriptor_dim: D of the raw output float32 [N, D].
    l2_normalized: whether the model output is already L2-normalised (the
    Embedder normalises either way).
    """
    input_size: tuple[int, int] = (320, 240)
    resize: str = "center_crop"
    interpolation: str = "area"
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    descriptor_dim: int = 384
    l2_normalized: bool = False
    source: str = field(default="<contract>", compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.source
        w_h = tuple(self.input_size)
        if len(w_h) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in w_h):
            raise UserError(f"{where}: input_size must be [W, H] positive integers, got {self.input_size!r}")
        object.__setattr__(self, "input_size", (int(w_h[0]), int(w_h[1])))
        for key, choices in (("resize", RESIZE_POLICIES), ("interpolation", INTERPOLATIONS),
                             ("channel_order", CHANNEL_ORDERS)):
            if getattr(self, key) not in choices:
                raise UserError(f"{where}: {key} must be one of {list(choices)}, got {getattr(self, key)!r}")
        for key in ("mean", "std"):
            vals = tuple(getattr(self, key))
            if len(vals) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                raise UserError(f"{where}: {key} must be 3 numbers (R, G, B), got {getattr(self, key)!r}")
            object.__setattr__(self, key, tuple(float(v) for v in vals))
        if any(s <= 0 for s in self.std):
            raise UserError(f"{where}: std values must be > 0, got {self.std!r}")
        if isinstance(self.descriptor_dim, bool) or not isinstance(self.descriptor_dim, int) \
                or self.descriptor_dim < 1:
            raise UserError(f"{where}: descriptor_dim must be a positive integer, got {self.descriptor_dim!r}")
        if not isinstance(self.l2_normalized, bool):
            raise UserError(f"{where}: l2_normalized must be true/false, got {self.l2_normalized!r}")

    @property
    def width(self) -> int:
        return self.input_size[0]

    @property
    def height(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict, with format/version tags."""
        d = asdict(self)
        d.pop("source")
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {"format": CONTRACT_FORMAT, "version": CONTRACT_VERSION, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<contract>") -> "PreprocessContract":
        """Inverse of :meth:`to_dict`; unknown keys and other versions are errors."""
        if not isinstance(data, Mapping):
            raise UserError(f"{source}: preprocessing contract must be a mapping, got {type(data).__name__}")
        data = dict(data)
        fmt, ver = data.pop("format", CONTRACT_FORMAT), data.pop("version", CONTRACT_VERSION)
        if fmt != CONTRACT_FORMAT or ver != CONTRACT_VERSION:
            raise UserError(f"{source}: preprocessing contract is {fmt!r} v{ver}, this code reads "
                            f"{CONTRACT_FORMAT!r} v{CONTRACT_VERSION}; re-export the model")
        known = {f.name for f in fields(cls)} - {"source"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown preprocessing contract key(s) {unknown}; valid: {sorted(known)}")
        for key in ("input_size", "mean", "std"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        return cls(**data, source=source)

    @classmethod
    def from_json(cls, text: str, source: str = "<contract>") -> "PreprocessContract":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{source}: preprocessing contract is not valid JSON ({exc})") from None
        return cls.from_dict(data, source=source)


def check_contract(map_contract: Mapping[str, Any], model_contract: Mapping[str, Any],
                   map_where: str, model_where: str) -> None:
    """UserError naming every preprocessing key on which the map and the model differ.

    A map built with another resize, crop, channel order or normalisation has
    descriptors of other images than the node will compute.  A key on one
    side only is a difference too: a map whose contract lacks ``resize``
    cannot show it was made with the model's resize.
    """
    absent = "<absent>"
    diffs = [f"{key}: map {map_contract.get(key, absent)!r}, model {model_contract.get(key, absent)!r}"
             for key in sorted(set(map_contract) | set(model_contract))
             if key not in map_contract or key not in model_contract
             or _norm(map_contract[key]) != _norm(model_contract[key])]
    if diffs:
        raise UserError(f"{map_where}: the map's preprocessing contract differs from the model's "
                        f"({model_where}): " + "; ".join(diffs)
                        + "; rebuild the map with this model ('distilvpr map build')")


def _norm(value: Any) -> Any:
    # JSON turns tuples into lists and may turn 1.0 into 1.
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value
