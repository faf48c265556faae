"""Models: image backbones, GeM, LiDAR encoders, the teacher and the student.

Public API::

    build_student(StudentConfig) -> Student      # [B,3,H,W] -> [B,D] raw
    build_teacher(TeacherConfig) -> Teacher      # (image, lidar) -> [B, image_dim + lidar_dim]
    save_checkpoint(path, model, kind, cfg, input_size, epoch, metrics)
    load_student(path) -> (Student.eval(), model config dict)
    load_teacher(path) -> (Teacher.eval(), model config dict)
"""
from .checkpoint import load_student, load_teacher, read_checkpoint, save_checkpoint
from .config import BevConfig, StudentConfig, TeacherConfig
from .lidar import LIDAR_ENCODERS, lidar_encoder_spec
from .pooling import GeM
from .student import Student, build_student
from .teacher import Teacher, build_teacher

__all__ = ["BevConfig", "GeM", "LIDAR_ENCODERS", "Student", "StudentConfig", "Teacher",
           "TeacherConfig", "build_student", "build_teacher", "lidar_encoder_spec",
           "load_student", "load_teacher", "read_checkpoint", "save_checkpoint"]
