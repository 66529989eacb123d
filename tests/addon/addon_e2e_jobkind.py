"""A small real job kind for the add-on's end-to-end test: lift the uploaded depth to points.

Loaded by a real ``recast4d serve --job-kinds addon_e2e_jobkind`` process. For every source frame it
lifts ``depth`` (planar z, metres) with that frame's camera (OpenCV, pixel centres at +0.5) into
world points coloured by ``frames``, streams them on ``points`` ({"xyz", "rgb"}), writes them as a
time-sampled ``UsdGeom.Points`` stage and streams that file on ``usd`` (chunk meta ``filename``).
"""

from __future__ import annotations

import numpy as np

from backend.jobs import register_job_kind
from protocol.camera import Camera
from protocol.errors import ValidationError

KIND = "addon_lift"
FILE_CHUNK_BYTES = 256 << 10


def lift_frame(depth: np.ndarray, rgb: np.ndarray, camera: Camera, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World points (N, 3) float32 and colours (N, 3) uint8 of the pixels with depth > 0."""
    h, w = depth.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = depth[v, u]
    keep = np.isfinite(z) & (z > 0)
    pix = np.stack([u[keep] + 0.5, v[keep] + 0.5, np.ones(keep.sum())], axis=0)
    cam_pts = np.linalg.inv(camera.K) @ pix * z[keep]
    c2w = camera.camera_to_world
    world = (c2w[:3, :3] @ cam_pts).T + c2w[:3, 3]
    return world.astype(np.float32), rgb[v, u][keep].astype(np.uint8)


def validate(params: dict, inputs: dict) -> None:
    if "depth" not in inputs or "frames" not in inputs:
        raise ValidationError("addon_lift needs frames and depth")
    if len(params.get("cameras", [])) != inputs["frames"].shape[0]:
        raise ValidationError("addon_lift needs one source camera per frame")


def run(ctx) -> None:
    from pxr import Sdf, Usd, UsdGeom, Vt

    frames, depth = ctx.inputs["frames"], ctx.inputs["depth"]
    cameras = [Camera.from_dict(c) for c in ctx.params["cameras"]]
    start = int(ctx.params.get("start_frame", 1))
    path = ctx.output_dir / "scene.usdc"
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetStartTimeCode(start)
    stage.SetEndTimeCode(start + len(cameras) - 1)
    stage.SetTimeCodesPerSecond(float(ctx.params.get("fps", 24.0)))
    UsdGeom.Xform.Define(stage, "/Recast4D")
    prim = UsdGeom.Points.Define(stage, "/Recast4D/point_cloud")
    color = UsdGeom.PrimvarsAPI(prim).CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray,
                                                    UsdGeom.Tokens.vertex)
    ctx.declare_stream("points", {"frames": len(cameras)})
    delay_s = float(ctx.params.get("test_delay_s", 0.0))  # lets the cancel test catch the job running
    for i, camera in enumerate(cameras):
        ctx.check_cancel()
        if delay_s:
            ctx.cancel_event.wait(delay_s)
            ctx.check_cancel()
        xyz, rgb = lift_frame(depth[i], frames[i], camera)
        ctx.progress("lift", i + 1, len(cameras))
        ctx.emit("points", {"xyz": xyz, "rgb": rgb}, {"frame": i})
        prim.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(xyz), start + i)
        prim.GetWidthsAttr().Set(Vt.FloatArray.FromNumpy(np.full(len(xyz), 0.05, np.float32)), start + i)
        color.Set(Vt.Vec3fArray.FromNumpy(rgb.astype(np.float32) / 255.0), start + i)
    stage.GetRootLayer().Save()
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    ctx.declare_stream("usd", {"meta": {"filename": "scene.usdc"}})
    for offset in range(0, len(data), FILE_CHUNK_BYTES):
        ctx.emit("usd", {"data": data[offset:offset + FILE_CHUNK_BYTES]}, {"filename": "scene.usdc"})
    ctx.progress("export", 1, 1)


register_job_kind(KIND, run, validate, description="add-on e2e test: lift depth to points")
