"""Write small Recast 4D-style USD results with pxr (time-sampled UsdGeom.Points)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_points_usd(path: Path, counts: list[int], *, gaussians: bool = False, fps: float = 24.0,
                     first_frame: int = 1, seed: int = 0, width: float = 0.08) -> Path:
    """One ``UsdGeom.Points`` prim with ``counts[i]`` points at frame ``first_frame + i``.

    Points lie in a 1 m cube centred 4 m in front of the origin along +Y (Blender's default forward
    for a camera rotated 90 degrees about X); metres, Z up. Gaussians add opacity/scale/orient.
    """
    from pxr import Sdf, Usd, UsdGeom, Vt

    rng = np.random.default_rng(seed)
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetStartTimeCode(first_frame)
    stage.SetEndTimeCode(first_frame + len(counts) - 1)
    stage.SetTimeCodesPerSecond(fps)
    stage.SetFramesPerSecond(fps)
    UsdGeom.Xform.Define(stage, "/result")
    prim = UsdGeom.Points.Define(stage, "/result/gaussians" if gaussians else "/result/points")
    primvars = UsdGeom.PrimvarsAPI(prim)
    color = primvars.CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex)
    if gaussians:
        opacity = primvars.CreatePrimvar("opacity", Sdf.ValueTypeNames.FloatArray, UsdGeom.Tokens.vertex)
        scale = primvars.CreatePrimvar("scale", Sdf.ValueTypeNames.Float3Array, UsdGeom.Tokens.vertex)
        orient = primvars.CreatePrimvar("orient", Sdf.ValueTypeNames.QuatfArray, UsdGeom.Tokens.vertex)
    for i, n in enumerate(counts):
        t = first_frame + i
        pts = (rng.random((n, 3)) - 0.5).astype(np.float32)
        pts[:, 1] += 4.0
        prim.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(pts), t)
        prim.GetWidthsAttr().Set(Vt.FloatArray.FromNumpy(np.full(n, width, np.float32)), t)
        color.Set(Vt.Vec3fArray.FromNumpy(rng.random((n, 3)).astype(np.float32)), t)
        if gaussians:
            opacity.Set(Vt.FloatArray.FromNumpy(np.full(n, 0.9, np.float32)), t)
            scale.Set(Vt.Vec3fArray.FromNumpy(np.full((n, 3), width / 3.0, np.float32)), t)
            quats = np.zeros((n, 4), np.float32)
            quats[:, 3] = 1.0  # GfQuatf memory order: imaginary xyz, then real
            orient.Set(Vt.QuatfArray.FromNumpy(quats), t)
    stage.GetRootLayer().Save()
    return path
