"""sRGB <-> linear conversion at the boundary between frames (sRGB) and USD/Blender colours (linear)."""

import numpy as np

from protocol.color import linear_to_srgb, srgb_to_linear


def test_known_values_and_round_trip():
    np.testing.assert_allclose(srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0])),
                               [0.0, 0.04045 / 12.92, 0.21404, 1.0], atol=1e-5)
    values = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(values)), values, atol=1e-5)
    assert srgb_to_linear(np.array([[1.5, -0.2]])).tolist() == [[1.0, 0.0]]
