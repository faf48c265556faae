"""Typed configuration of the synthetic town (``config/synth_*.yaml``).

Units: metres, degrees, seconds.  Every key is documented in ``docs/synth.md``;
the help texts here are the short form.  Cross-field checks (route long enough
for the requested frames, roles present) run in ``__post_init__`` so a bad
config fails before any rendering starts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import ConfigError, spec

TIMES_OF_DAY = ("dawn", "noon", "dusk", "night")
WEATHERS = ("clear", "overcast", "fog", "rain")
SEASONS = ("summer", "autumn", "winter")
ROLES = ("train", "val", "test")


@dataclass
class TownConfig:
    """The static world: a jittered street grid with buildings and street furniture."""
    blocks_x: int = field(default=4, metadata=spec("street blocks along x", ge=2, le=20))
    blocks_y: int = field(default=3, metadata=spec("street blocks along y", ge=1, le=20))
    block_size_m: float = field(default=80.0, metadata=spec("nominal junction spacing", ge=30.0, le=300.0))
    junction_jitter_m: float = field(default=8.0, metadata=spec(
        "random shift of each junction (irregular streets)", ge=0.0, le=20.0))
    street_width_m: float = field(default=12.0, metadata=spec("carriageway width", ge=4.0, le=30.0))
    setback_m: float = field(default=4.0, metadata=spec(
        "sidewalk between road edge and building fronts", ge=1.0, le=20.0))
    building_height_m: tuple[float, float] = field(default=(6.0, 34.0), metadata=spec("min/max building height"))
    building_width_m: tuple[float, float] = field(default=(8.0, 22.0), metadata=spec("min/max frontage width"))
    building_gap_m: tuple[float, float] = field(default=(0.0, 8.0), metadata=spec(
        "min/max gap between neighbouring buildings"))
    repeat_fraction: float = field(default=0.25, metadata=spec(
        "fraction of street sides whose facades copy another side (perceptual aliasing)", ge=0.0, le=1.0))
    tree_spacing_m: float = field(default=14.0, metadata=spec("mean distance between street trees", gt=2.0))
    pole_spacing_m: float = field(default=25.0, metadata=spec("distance between street lights", gt=5.0))
    parked_car_prob: float = field(default=0.5, metadata=spec("chance of a parked car per 7 m of kerb", ge=0.0, le=1.0))
    fence_prob: float = field(default=0.3, metadata=spec("chance that a building gap is fenced", ge=0.0, le=1.0))

    def __post_init__(self) -> None:
        for key in ("building_height_m", "building_width_m", "building_gap_m"):
            lo, hi = getattr(self, key)
            if not (0 <= lo <= hi):
                raise ConfigError(f"town.{key}: expected [min, max] with 0 <= min <= max, got {[lo, hi]}")


@dataclass
class RouteConfig:
    """Where and how fast the traversals drive: a closed loop through the grid."""
    frames: int = field(default=600, metadata=spec("frames per traversal", ge=2))
    spacing_m: float = field(default=1.5, metadata=spec("distance driven between frames", gt=0.05, le=20.0))
    speed_mps: float = field(default=8.0, metadata=spec("vehicle speed; stamps = distance / speed", gt=0.1, le=50.0))
    heading_jitter_deg: float = field(default=2.0, metadata=spec("std of per-frame yaw noise", ge=0.0, le=20.0))


@dataclass
class CameraConfig:
    """Pinhole camera on base_link looking forward."""
    width: int = field(default=320, metadata=spec("image width, pixels", ge=16, le=4096))
    height: int = field(default=240, metadata=spec("image height, pixels", ge=16, le=4096))
    hfov_deg: float = field(default=90.0, metadata=spec("horizontal field of view", gt=10.0, lt=170.0))
    position_m: tuple[float, float, float] = field(default=(1.2, 0.0, 1.6), metadata=spec(
        "camera centre in base_link (x fwd, y left, z up)"))
    pitch_deg: float = field(default=-2.0, metadata=spec("pitch, negative looks down", ge=-45.0, le=45.0))
    shadows: bool = field(default=True, metadata=spec("cast shadow rays towards the sun"))


@dataclass
class LidarConfig:
    """Spinning multi-beam LiDAR on base_link."""
    beams: int = field(default=32, metadata=spec("vertical channels", ge=1, le=256))
    azimuth_bins: int = field(default=1024, metadata=spec("firings per revolution", ge=16, le=8192))
    vfov_up_deg: float = field(default=10.0, metadata=spec("highest beam elevation", ge=-30.0, le=60.0))
    vfov_down_deg: float = field(default=-30.0, metadata=spec("lowest beam elevation", ge=-89.0, le=30.0))
    max_range_m: float = field(default=100.0, metadata=spec("returns beyond are dropped", gt=1.0, le=500.0))
    min_range_m: float = field(default=1.0, metadata=spec("returns nearer are dropped (own vehicle)", ge=0.0))
    noise_m: float = field(default=0.02, metadata=spec("std of range noise", ge=0.0, le=1.0))
    dropout: float = field(default=0.05, metadata=spec("fraction of returns randomly lost", ge=0.0, lt=1.0))
    position_m: tuple[float, float, float] = field(default=(0.0, 0.0, 1.9), metadata=spec("LiDAR origin in base_link"))

    def __post_init__(self) -> None:
        if self.vfov_down_deg >= self.vfov_up_deg:
            raise ConfigError(f"lidar.vfov_down_deg ({self.vfov_down_deg}) must be below "
                              f"lidar.vfov_up_deg ({self.vfov_up_deg})")
        if self.min_range_m >= self.max_range_m:
            raise ConfigError(f"lidar.min_range_m ({self.min_range_m}) must be below "
                              f"lidar.max_range_m ({self.max_range_m})")


@dataclass
class TraversalConfig:
    """One drive of the route under one set of conditions."""
    name: str = field(default="", metadata=spec("unique traversal name, used as directory name"))
    role: str = field(default="train", metadata=spec("dataset split", choices=ROLES))
    time_of_day: str = field(default="noon", metadata=spec("sun position / lighting", choices=TIMES_OF_DAY))
    weather: str = field(default="clear", metadata=spec("sky and visibility", choices=WEATHERS))
    season: str = field(default="summer", metadata=spec("foliage and snow", choices=SEASONS))
    lateral_offset_m: float = field(default=0.0, metadata=spec("mean offset from lane centre, + left", ge=-4.0, le=4.0))
    lane_changes: int = field(default=1, metadata=spec("number of smooth lane changes along the drive", ge=0, le=50))
    moved_cars: float = field(default=0.5, metadata=spec(
        "fraction of parked cars re-placed for this drive", ge=0.0, le=1.0))
    traffic_cars: int = field(default=6, metadata=spec("moving cars on the route", ge=0, le=200))
    changed_buildings: int = field(default=0, metadata=spec("buildings repainted/rebuilt for this drive", ge=0))
    reverse_fraction: float = field(default=0.0, metadata=spec(
        "part of the route driven in the opposite direction", ge=0.0, le=0.9))
    start_fraction: float = field(default=0.0, metadata=spec(
        "where on the loop the drive starts, as a fraction of its length", ge=0.0, lt=1.0))
    frames: int = field(default=0, metadata=spec(
        "frames of this drive (0 = route.frames); a shorter drive covers only part of the loop", ge=0))
    length_fraction: float = field(default=0.0, metadata=spec(
        "drive this fraction of the loop instead of a frame count (0 = use frames); the frame "
        "count then follows route.spacing_m", ge=0.0, le=1.0))

    def condition(self) -> tuple[str, str, str]:
        """(time_of_day, weather, season): what 'the same condition' means for the split checks."""
        return (self.time_of_day, self.weather, self.season)


@dataclass
class OutputConfig:
    """Which outputs to write besides the native dataset."""
    bags: bool = field(default=True, metadata=spec("one rosbag2 per traversal"))
    bag_storage: str = field(default="sqlite3", metadata=spec("rosbag2 storage plugin (sqlite3: every ROS 2 "
                             "distribution reads it without a plugin)", choices=("sqlite3", "mcap")))
    bag_image: str = field(default="raw", metadata=spec(
        "raw = sensor_msgs/Image rgb8, png/jpeg = CompressedImage", choices=("raw", "png", "jpeg")))
    oxford: bool = field(default=True, metadata=spec("export the PointNetVLAD/MinkLoc++ benchmark format"))
    oxford_points: int = field(default=4096, metadata=spec("points per Oxford submap", ge=16))
    difficulty_report: bool = field(default=True, metadata=spec("compute tiny-image and LiDAR baselines"))
    odom_drift: float = field(default=0.01, metadata=spec(
        "odometry scale/heading noise per metre (dimensionless)", ge=0.0, le=0.5))


@dataclass
class SplitConfig:
    """The geographic train/test split (docs/synth.md, "Benchmark split").

    Test regions are contiguous stretches of the loop given as fractions of its
    arc length; frames driven over them are test-region frames.  Training and
    validation frames within ``buffer_m`` of any test-region frame are
    excluded when the data is loaded (and counted by the generator).
    """
    test_regions: list[list[float]] = field(default_factory=list, metadata=spec(
        "[[start, end], ...] fractions of the loop length (0 <= start < end <= 1); empty = no split"))
    buffer_m: float = field(default=50.0, metadata=spec(
        "no training/validation frame within this distance of a test-region frame", ge=0.0))
    stress_traversals: list[str] = field(default_factory=list, metadata=spec(
        "test traversals in a condition no training traversal has (protocol S)"))

    def __post_init__(self) -> None:
        for i, r in enumerate(self.test_regions):
            if len(r) != 2 or not (0.0 <= float(r[0]) < float(r[1]) <= 1.0):
                raise ConfigError(f"split.test_regions[{i}]: expected [start, end] with 0 <= start < end <= 1 "
                                  f"(fractions of the loop length), got {r}")
        spans = sorted((float(a), float(b)) for a, b in self.test_regions)
        for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
            if a1 < b0:
                raise ConfigError(f"split.test_regions: [{a0}, {b0}] and [{a1}, {b1}] overlap; merge them")


def _default_traversals() -> list[TraversalConfig]:
    return [TraversalConfig(name="t0_noon", role="train")]


@dataclass
class SynthConfig:
    """Root of ``config/synth_*.yaml``."""
    seed: int = field(default=0, metadata=spec("world + traversal seed; same seed => identical bytes", ge=0))
    workers: int = field(default=0, metadata=spec("render processes; 0 = one per CPU core", ge=0, le=256))
    town: TownConfig = field(default_factory=TownConfig)
    route: RouteConfig = field(default_factory=RouteConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    traversals: list[TraversalConfig] = field(default_factory=_default_traversals)
    split: SplitConfig = field(default_factory=SplitConfig)

    def frames_of(self, t: TraversalConfig, loop_length_m: float | None = None) -> int:
        """Frames of traversal ``t``: from ``length_fraction`` of the loop (needs
        ``loop_length_m``), else its own ``frames``, else ``route.frames``."""
        if t.length_fraction and loop_length_m is not None:
            return max(2, int(t.length_fraction * loop_length_m / self.route.spacing_m) + 1)
        return t.frames or self.route.frames

    def __post_init__(self) -> None:
        names = [t.name for t in self.traversals]
        if not names:
            raise ConfigError("traversals: at least one traversal is needed")
        for i, name in enumerate(names):
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ConfigError(f"traversals[{i}].name: {name!r} must be non-empty and use only "
                                  "letters, digits, '_' or '-' (it becomes a directory name)")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"traversals: duplicate names {dup}; give each traversal its own name")
        have = approx_route_length(self.town)
        for t in self.traversals:
            if t.length_fraction:
                continue   # sized from the built loop (sim.plan), always fits
            n = self.frames_of(t)
            need = (n - 1) * self.route.spacing_m
            if need > have:
                key = f"traversals[{t.name}].frames" if t.frames else "route.frames"
                raise ConfigError(
                    f"{key}: {n} frames x route.spacing_m {self.route.spacing_m} m "
                    f"= {need:.0f} m, but the town's loop is only ~{have:.0f} m; lower {key} or "
                    f"route.spacing_m, or raise town.blocks_x/blocks_y/block_size_m")
        self._check_split()

    def _check_split(self) -> None:
        by_name = {t.name: t for t in self.traversals}
        train_conditions = {t.condition() for t in self.traversals if t.role == "train"}
        for name in self.split.stress_traversals:
            t = by_name.get(name)
            if t is None or t.role != "test":
                raise ConfigError(f"split.stress_traversals: {name!r} is not a test traversal; "
                                  f"test traversals: {[x.name for x in self.traversals if x.role == 'test']}")
            if t.condition() in train_conditions:
                raise ConfigError(f"split.stress_traversals: {name!r} drives in condition {t.condition()}, "
                                  "which a training traversal has too; protocol S needs a condition unseen "
                                  "in training (change its time_of_day, weather or season)")
        if self.split.stress_traversals and not self.split.test_regions:
            raise ConfigError("split.stress_traversals needs split.test_regions (the geographic split)")


def approx_route_length(town: TownConfig) -> float:
    """Lower bound of the route loop length (m) before junction jitter.

    Counts the grid edges of ``sim.route.loop_nodes``; jitter only lengthens
    the loop and the rounded junction turns cut at most a few metres each,
    hence the 0.97 margin.
    """
    from .route import loop_nodes  # numpy only; kept local so config stays light
    nodes = loop_nodes(town.blocks_x, town.blocks_y)
    return 0.97 * (len(nodes) - 1) * town.block_size_m
