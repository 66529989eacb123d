"""GaussianSet: initialisation from known points, activations, masking, concatenation, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.gaussians import SH_C0, GaussianSet, gaussians_from_points, sh_coeff_count
from protocol.errors import ValidationError


def _known_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = np.array([[0.0, 0.0, 2.0], [1.0, -1.0, 4.0], [0.5, 0.25, 3.0]])
    colors = np.array([[1.0, 0.0, 0.0], [0.2, 0.4, 0.6], [0.5, 0.5, 0.5]])
    radius = np.array([2.0 / 500.0, 4.0 / 500.0, 3.0 / 500.0])  # depth / focal
    return points, colors, radius


def test_init_from_points_sets_scales_colours_and_opacity() -> None:
    points, colors, radius = _known_points()
    g = gaussians_from_points(points, colors, radius, opacity=0.9, sh_degree=2)
    assert len(g) == 3 and g.sh_degree == 2
    assert g.sh.shape == (3, sh_coeff_count(2), 3) == (3, 9, 3)
    np.testing.assert_allclose(g.means.numpy(), points, atol=1e-6)
    np.testing.assert_allclose(g.scales.numpy(), np.repeat(radius[:, None], 3, 1), rtol=1e-5)
    np.testing.assert_allclose(g.opacities.numpy(), 0.9, rtol=1e-5)
    np.testing.assert_allclose(g.base_colors.numpy(), colors, atol=1e-6)
    np.testing.assert_allclose(g.sh[:, 0].numpy(), (colors - 0.5) / SH_C0, atol=1e-5)
    assert torch.count_nonzero(g.sh[:, 1:]) == 0
    np.testing.assert_allclose(g.rotations.numpy(), np.tile([1.0, 0, 0, 0], (3, 1)))
    wider = gaussians_from_points(points, colors, radius, scale_factor=2.0)
    np.testing.assert_allclose(wider.scales.numpy(), 2.0 * np.repeat(radius[:, None], 3, 1), rtol=1e-5)


def test_init_rejects_bad_input() -> None:
    points, colors, radius = _known_points()
    with pytest.raises(ValidationError, match="same length"):
        gaussians_from_points(points, colors[:2], radius)
    with pytest.raises(ValidationError, match="positive"):
        gaussians_from_points(points, colors, -radius)
    with pytest.raises(ValidationError, match="NaN"):
        gaussians_from_points(np.full((3, 3), np.nan), colors, radius)
    with pytest.raises(ValidationError, match="shape"):
        gaussians_from_points(points[:, :2], colors, radius)
    with pytest.raises(ValidationError, match="SH degree"):
        gaussians_from_points(points, colors, radius, sh_degree=4)


def test_constructor_checks_shapes() -> None:
    with pytest.raises(ValidationError, match="sh"):
        GaussianSet(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2),
                    torch.zeros(2, 4, 3), sh_degree=0)


def test_mask_prune_concatenate_and_state_round_trip() -> None:
    points, colors, radius = _known_points()
    a = gaussians_from_points(points, colors, radius, sh_degree=0)
    a.logit_opacities[1] = -10.0  # nearly transparent
    pruned = a.pruned(0.01)
    assert len(pruned) == 2
    np.testing.assert_allclose(pruned.means.numpy(), points[[0, 2]], atol=1e-6)

    b = gaussians_from_points(points[:2], colors[:2], radius[:2], sh_degree=1)
    b.sh[:, 1:] = 0.25
    both = GaussianSet.concatenate([a, b])
    assert len(both) == 5 and both.sh_degree == 1 and both.sh.shape == (5, 4, 3)
    assert torch.count_nonzero(both.sh[:3, 1:]) == 0  # zero-padded degree-0 part
    assert torch.all(both.sh[3:, 1:] == 0.25)

    restored = GaussianSet.from_state_dict(both.state_dict())
    for name in ("means", "log_scales", "quats", "logit_opacities", "sh"):
        assert torch.equal(getattr(restored, name), getattr(both, name))
    assert restored.sh_degree == 1
    assert restored.to("cpu", torch.float64).means.dtype == torch.float64
    with pytest.raises(ValidationError, match="missing"):
        GaussianSet.from_state_dict({"means": torch.zeros(1, 3)})
