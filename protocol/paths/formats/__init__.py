"""Camera-path file formats: nerfstudio, ReCamMaster, TrajectoryCrafter, ViewCrafter/Free4D, GEN3C, and source
cameras from nerfstudio / instant-ngp ``transforms.json`` and COLMAP text models."""

from .common import CameraFormatWarning, CameraPathData, FormatConstraintWarning, LossyFormatWarning
from .registry import FORMATS, canonical_format, read_camera_path, write_camera_path

__all__ = [
    "FORMATS",
    "CameraFormatWarning",
    "CameraPathData",
    "FormatConstraintWarning",
    "LossyFormatWarning",
    "canonical_format",
    "read_camera_path",
    "write_camera_path",
]
