"""Result files written by the backend's own writers, for the Blender tests (run with the backend's Python).

The Blender 5.3 environment has no torch (``addon/`` never imports it), so its tests get their
files from this script, run as a subprocess of the backend's interpreter::

    $RECAST4D_BACKEND_PYTHON tests/blender53/backend_fixtures.py KIND OUT_DIR   (or: all OUT_DIR)

Kinds (all in the world frame of a camera 4 m in front of the origin, metres, Z up):

- ``result``: ``scene.usdc`` with 3 frames of a point cloud and Gaussians (``UsdSceneWriter``: the
  Points prims and the ``ParticleField3DGaussianSplat`` prim) and ``gaussians_0000i.ply`` (3DGS PLY);
- ``points_only``: ``scene.usdc`` with a point cloud and no Gaussians;
- ``nan_scales`` / ``zero_quats``: the ``result`` files with frame 2 corrupted (NaN scales or zero
  rotation quaternions in every Gaussian prim and in the PLY), as a broken writer would leave them;
- ``conventions``: one known Gaussian set (anisotropic, rotated, semi-transparent, coloured) in
  ``scene.usdc`` and ``gaussians.ply``, a camera (``camera.json``: OpenCV ``K``, world-to-camera)
  and the backend reference rasteriser's renders of it: ``reference_srgb.npy`` (3DGS's classic
  image formation: composited in sRGB, 0.3 px^2 dilation) and ``reference_linear.npy`` (Cycles' way,
  ``CYCLES_IMAGE``: composited in linear light, the pixel filter as a footprint-keeping dilation),
  both (H, W, 3) float sRGB over black.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

FRAMES = 3
COUNTS = (150, 160, 170)
CAMERA_WIDTH, CAMERA_HEIGHT, CAMERA_FOCAL_PX = 96, 72, 90.0


def _gaussians(rng: np.random.Generator, n: int, *, spread: float = 0.5):
    import torch

    from backend.gaussians.gaussian_set import GaussianSet, rgb_to_sh_dc

    means = (rng.normal(size=(n, 3)) * spread).astype(np.float32)
    log_scales = np.log(rng.uniform(0.02, 0.2, (n, 3))).astype(np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    opacity = rng.uniform(0.3, 0.95, n).astype(np.float32)
    rgb = rng.uniform(0.05, 0.95, (n, 3)).astype(np.float32)
    return GaussianSet(means=torch.from_numpy(means), log_scales=torch.from_numpy(log_scales),
                       quats=torch.from_numpy(quats), logit_opacities=torch.from_numpy(np.log(opacity / (1 - opacity))),
                       sh=rgb_to_sh_dc(torch.from_numpy(rgb))[:, None, :])


def write_result(out: Path, *, gaussians: bool = True) -> None:
    from backend.export.ply import write_gaussian_ply
    from backend.export.usd_writer import UsdSceneWriter

    rng = np.random.default_rng(7)
    with UsdSceneWriter(out / "scene.usdc", fps=24.0, start_frame=1) as writer:
        for frame, n in enumerate(COUNTS):
            xyz = (rng.normal(size=(n, 3)) * 0.5).astype(np.float32)
            writer.add_point_cloud_frame(frame, xyz, rng.random((n, 3)).astype(np.float32))
            if gaussians:
                g = _gaussians(rng, n)
                writer.add_gaussian_frame(frame, g)
                write_gaussian_ply(out / f"gaussians_{frame:05d}.ply", g)


def corrupt(out: Path, what: str, frame_index: int = 1) -> None:
    """Write NaN scales (``what="scales"``) or zero quaternions (``"quats"``) into frame
    ``frame_index`` of every Gaussian prim of ``scene.usdc`` and of its PLY."""
    from plyfile import PlyData
    from pxr import Usd, UsdGeom, UsdVol, Vt

    stage = Usd.Stage.Open(str(out / "scene.usdc"))
    time = Usd.TimeCode(1 + frame_index)
    n = COUNTS[frame_index]
    for prim in stage.Traverse():
        if prim.IsA(UsdVol.ParticleField3DGaussianSplat):
            field = UsdVol.ParticleField3DGaussianSplat(prim)
            if what == "scales":
                field.GetScalesAttr().Set(Vt.Vec3fArray.FromNumpy(np.full((n, 3), np.nan, np.float32)), time)
            else:
                field.GetOrientationsAttr().Set(Vt.QuatfArray.FromNumpy(np.zeros((n, 4), np.float32)), time)
        elif prim.IsA(UsdGeom.Points) and UsdGeom.PrimvarsAPI(prim).HasPrimvar("scale"):
            api = UsdGeom.PrimvarsAPI(prim)
            if what == "scales":
                api.GetPrimvar("scale").Set(Vt.Vec3fArray.FromNumpy(np.full((n, 3), np.nan, np.float32)), time)
            else:
                api.GetPrimvar("orient").Set(Vt.QuatfArray.FromNumpy(np.zeros((n, 4), np.float32)), time)
    stage.GetRootLayer().Save()
    ply_path = out / f"gaussians_{frame_index:05d}.ply"
    ply = PlyData.read(str(ply_path), mmap=False)  # rewritten in place below
    vertex = ply["vertex"].data
    for name in (("scale_0", "scale_1", "scale_2") if what == "scales" else ("rot_0", "rot_1", "rot_2", "rot_3")):
        vertex[name] = np.nan if what == "scales" else 0.0
    ply.write(str(ply_path))


def write_conventions(out: Path) -> None:
    import torch

    from backend.export.ply import write_gaussian_ply
    from backend.export.usd_writer import UsdSceneWriter
    from backend.gaussians.rasterize_torch import CYCLES_IMAGE, rasterize_torch
    from protocol.camera import look_at

    rng = np.random.default_rng(3)
    g = _gaussians(rng, 40)
    g.means[:, 2] *= 0.6
    K = np.array([[CAMERA_FOCAL_PX, 0, CAMERA_WIDTH / 2], [0, CAMERA_FOCAL_PX, CAMERA_HEIGHT / 2], [0, 0, 1]])
    w2c = look_at([0.5, -4.0, 1.0], [0.0, 0.0, 0.0], up=(0.0, 0.0, 1.0))
    k, view = torch.tensor(K, dtype=torch.float32), torch.tensor(w2c, dtype=torch.float32)
    srgb = rasterize_torch(g, k, view, CAMERA_WIDTH, CAMERA_HEIGHT).rgb.numpy()
    cycles = rasterize_torch(g, k, view, CAMERA_WIDTH, CAMERA_HEIGHT, **CYCLES_IMAGE.kwargs()).rgb.numpy()
    np.save(out / "reference_srgb.npy", srgb.astype(np.float32))
    np.save(out / "reference_linear.npy", cycles.astype(np.float32))
    (out / "camera.json").write_text(json.dumps({"K": K.tolist(), "world_to_camera": w2c.tolist(),
                                                 "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT}))
    with UsdSceneWriter(out / "scene.usdc", fps=24.0, start_frame=1) as writer:
        writer.add_gaussian_frame(0, g)
    write_gaussian_ply(out / "gaussians.ply", g)


KINDS = ("result", "points_only", "nan_scales", "zero_quats", "conventions")


def write_kind(kind: str, out: Path) -> None:
    """Write the files of ``kind`` (see the module docstring) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if kind == "result":
        write_result(out)
    elif kind == "points_only":
        write_result(out, gaussians=False)
    elif kind in ("nan_scales", "zero_quats"):
        write_result(out)
        corrupt(out, "scales" if kind == "nan_scales" else "quats")
    elif kind == "conventions":
        write_conventions(out)
    else:
        raise SystemExit(f"unknown fixture kind {kind!r}; one of {', '.join(KINDS)} or 'all'")


def main(argv: list[str]) -> int:
    """``KIND OUT_DIR`` writes one kind into OUT_DIR; ``all OUT_DIR`` writes every kind into OUT_DIR/<kind>."""
    kind, out = argv[0], Path(argv[1])
    for name in KINDS if kind == "all" else (kind,):
        write_kind(name, out / name if kind == "all" else out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
