"""Blender 5.0's USD importer turns our stage into animated POINTCLOUD objects with our attributes.

Found with bpy 5.0.1: each ``UsdGeom.Points`` becomes a POINTCLOUD object (parented to an EMPTY
for ``/Recast4D``) with a MESH_SEQUENCE_CACHE modifier; per frame the evaluated point cloud has
``position``, ``radius`` (= width / 2), ``displayColor`` (FLOAT_COLOR), and our primvars as point
attributes: ``opacity`` (FLOAT), ``scale`` (FLOAT_VECTOR), ``orient`` (QUATERNION, wxyz). The point
count may change per frame. The scene's frame range follows the stage, its fps does NOT (the
importer leaves ``scene.render.fps`` alone: the add-on sets it from the job). The
``ParticleField3DGaussianSplat`` prim is not imported (no Blender object).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.export import UsdSceneWriter
from backend.gaussians import SH_C0, GaussianSet
from protocol.color import srgb_to_linear

COUNTS = (25, 40, 33)


def _gaussians(n: int, seed: int) -> GaussianSet:
    gen = torch.Generator().manual_seed(seed)
    return GaussianSet(torch.randn(n, 3, generator=gen), torch.randn(n, 3, generator=gen) - 3.0,
                       torch.randn(n, 4, generator=gen), torch.randn(n, generator=gen),
                       0.3 * torch.randn(n, 1, 3, generator=gen), 0)


def _attribute(data, name: str, width: int) -> np.ndarray:
    attr = data.attributes[name]
    key = {"FLOAT_COLOR": "color", "FLOAT_VECTOR": "vector"}.get(attr.data_type, "value")
    values = np.zeros(len(attr.data) * width, dtype=np.float32)
    attr.data.foreach_get(key, values)
    return values.reshape(-1, width) if width > 1 else values


@pytest.mark.blender
def test_blender_imports_animated_point_clouds_with_attributes(tmp_path: Path) -> None:
    import bpy

    path = tmp_path / "recast.usdc"
    rng = np.random.default_rng(0)
    clouds = []
    with UsdSceneWriter(path, fps=25.0, start_frame=1) as writer:
        for i, n in enumerate(COUNTS):
            pts = rng.normal(size=(n, 3)).astype(np.float32)
            col = rng.uniform(0, 1, (n, 3)).astype(np.float32)
            clouds.append((pts, col))
            writer.add_point_cloud_frame(i, pts, col, widths=0.02, name="points")
            writer.add_gaussian_frame(i, _gaussians(n + 2, i), name="gaussians")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    assert bpy.ops.wm.usd_import(filepath=str(path)) == {"FINISHED"}
    scene = bpy.context.scene
    # set_frame_range (default on) applies the stage's start/end time codes; the importer does not
    # change scene.render.fps, so the add-on must set the job's fps itself
    assert (scene.frame_start, scene.frame_end) == (1, len(COUNTS))
    cloud_obj, gauss_obj = bpy.data.objects["points"], bpy.data.objects["gaussians"]
    assert "gaussians_splats" not in bpy.data.objects  # the splat particle field is skipped
    for obj in (cloud_obj, gauss_obj):
        assert obj.type == "POINTCLOUD"
        assert [m.type for m in obj.modifiers] == ["MESH_SEQUENCE_CACHE"]

    for i, n in enumerate(COUNTS):
        scene.frame_set(1 + i)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        cloud = cloud_obj.evaluated_get(depsgraph).data
        pts, col = clouds[i]
        assert len(cloud.points) == n
        np.testing.assert_allclose(_attribute(cloud, "position", 3), pts, atol=1e-6)
        np.testing.assert_allclose(_attribute(cloud, "radius", 1), 0.01, rtol=1e-6)
        np.testing.assert_allclose(_attribute(cloud, "displayColor", 4)[:, :3], col, atol=1e-6)

        g = _gaussians(n + 2, i)
        gauss = gauss_obj.evaluated_get(depsgraph).data
        assert len(gauss.points) == n + 2
        np.testing.assert_allclose(_attribute(gauss, "position", 3), g.means.numpy(), atol=1e-6)
        np.testing.assert_allclose(_attribute(gauss, "opacity", 1), g.opacities.numpy(), rtol=1e-5)
        np.testing.assert_allclose(_attribute(gauss, "scale", 3), g.scales.numpy(), rtol=1e-5)
        np.testing.assert_allclose(_attribute(gauss, "orient", 4), g.rotations.numpy(), atol=1e-6)
        np.testing.assert_allclose(_attribute(gauss, "displayColor", 4)[:, :3],
                                   srgb_to_linear(g.sh[:, 0].numpy() * SH_C0 + 0.5), atol=1e-6)
        np.testing.assert_allclose(_attribute(gauss, "radius", 1), g.scales.max(dim=1).values.numpy(),
                                   rtol=1e-5)
