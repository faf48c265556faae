"""Typed configuration of ``distilvpr distil`` (config/distil_synth.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..foundation.config import ConfigError, spec
from ..data.datasets import AugmentConfig, DataConfig
from ..distill import DistillConfig
from ..evaluation.vpr import EvalConfig
from ..models import StudentConfig, TeacherConfig

STAGES = ("teacher", "cache", "student", "eval")


@dataclass
class StageConfig:
    """Optimisation of one training stage (Adam + MultiStep schedule)."""
    epochs: int = field(default=10, metadata=spec("passes over the training anchors", ge=1))
    lr: float = field(default=1e-3, metadata=spec("Adam learning rate", gt=0))
    weight_decay: float = field(default=1e-4, metadata=spec("Adam weight decay", ge=0))
    milestones: list[int] = field(default_factory=lambda: [6, 8], metadata=spec(
        "epochs after which the learning rate is multiplied by gamma"))
    gamma: float = field(default=0.1, metadata=spec("learning-rate decay factor", gt=0, le=1))
    pairs_per_batch: int = field(default=16, metadata=spec("P: anchors per batch, each with one positive", ge=2))
    max_batches: int = field(default=0, metadata=spec("stop each epoch after this many batches (0 = all)", ge=0))
    warmup_steps: int = field(default=0, metadata=spec(
        "linear learning-rate warm-up over this many optimiser steps (0 = none)", ge=0))
    collapse_check: bool = field(default=True, metadata=spec(
        "stop the run when the embeddings collapse (spread ~0, or triplet loss pinned at the margin "
        "for a whole epoch)"))


@dataclass
class TaskConfig:
    """The triplet task loss and which frames are positives/negatives (metres)."""
    margin: float = field(default=0.2, metadata=spec("triplet margin", ge=0))
    swap: bool = field(default=True, metadata=spec("use the positive-negative distance if smaller"))
    pos_radius_m: float = field(default=10.0, metadata=spec("positives: frames at most this far", gt=0))
    neg_radius_m: float = field(default=50.0, metadata=spec("negatives: frames farther than this", gt=0))
    student_weight: float = field(default=0.5, metadata=spec(
        "weight of the student's triplet loss next to the distillation terms (the reference uses 0.5)", ge=0))

    def __post_init__(self) -> None:
        if self.neg_radius_m < self.pos_radius_m:
            raise ConfigError(f"task.neg_radius_m ({self.neg_radius_m}) must be >= task.pos_radius_m "
                              f"({self.pos_radius_m})")


@dataclass
class RunConfig:
    """Where the run goes, what it does, on which device."""
    root: str = field(default="runs", metadata=spec("parent directory of run directories"))
    name: str = field(default="distil", metadata=spec("run name (suffix of the run directory)"))
    stages: list[str] = field(default_factory=lambda: list(STAGES), metadata=spec(
        "stages to run, a subset of teacher, cache, student, eval (in that order)"))
    teacher_checkpoint: str = field(default="", metadata=spec(
        "use this teacher checkpoint instead of the teacher stage's (empty = the run's own)"))
    teacher_cache: str = field(default="", metadata=spec(
        "use this teacher_cache.pt (from another run on the same data) instead of this run's"))
    resume: str = field(default="", metadata=spec("run directory to continue (empty = new run)"))
    seed: int = field(default=0, metadata=spec("seed of weights, sampling and augmentation"))
    device: str = field(default="auto", metadata=spec("auto | cpu | cuda | cuda:N"))
    amp: bool = field(default=True, metadata=spec("float16 autocast on CUDA (ignored on CPU)"))
    threads: int = field(default=0, metadata=spec("torch CPU threads (0 = torch default)", ge=0))

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ConfigError(f"run.stages: unknown or empty {bad or self.stages}; valid: {list(STAGES)}")
        if list(self.stages) != [s for s in STAGES if s in self.stages]:
            raise ConfigError(f"run.stages: {self.stages} must keep the order {list(STAGES)}")


@dataclass
class DistilRunConfig:
    """Everything ``distilvpr distil`` needs (config/distil_synth.yaml)."""
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train_teacher: StageConfig = field(default_factory=StageConfig)
    train_student: StageConfig = field(default_factory=StageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
