"""The add-on's Fast (few-step) property: off by default, sent with the generation parameters."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


def test_fast_property_is_sent_with_the_generation_parameters(registered_addon, bpy_clean) -> None:
    generation = bpy_clean.context.scene.recast4d.generation
    assert generation.to_params()["fast"] is False
    generation.engine, generation.fast = "wan-vace", True
    params = generation.to_params()
    assert params["fast"] is True and params["engine"] == "wan-vace"


def test_gaussians_are_fitted_by_default(registered_addon, bpy_clean) -> None:
    """Fitted Gaussians are what Blender 5.3 renders natively: a re-film asks for them unless turned off."""
    generation = bpy_clean.context.scene.recast4d.generation
    assert generation.to_params()["fit_gaussians"] is True
