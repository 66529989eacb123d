"""Cycles materials and geometry-node set-ups for imported point clouds and Gaussians.

Attribute names follow the USD result written by the backend (``UsdGeom.Points``):
``displayColor`` (linear RGB, point domain), ``radius`` (from ``widths / 2``, metres),
``opacity`` (0..1), ``scale`` (per-axis Gaussian standard deviations, metres, linear not log) and
``orient`` (unit quaternion, w first). Cycles renders a point cloud as spheres of ``radius``.

Splat approximation (documented limitation: Cycles cannot rasterise real 3D Gaussians): each
Gaussian becomes a sphere of radius ``sigma_extent * max(scale)``. For a ray hitting the sphere at a
normal making angle theta with the view direction, the distance of the ray from the centre, as a
fraction of the radius, is ``sin(theta)``; the Gaussian falloff along that distance is
``exp(-0.5 * (sigma_extent * sin(theta))^2)``, so alpha = ``opacity * exp(-0.5 * k^2 * (1 - cos^2))``.
The optional ellipsoid mode instances a unit ico-sphere per Gaussian, scaled by ``scale`` and rotated
by ``orient``, so elongated Gaussians keep their shape (slower, final frames only).
"""

from __future__ import annotations

import bpy

COLOR_ATTRIBUTE = "displayColor"
OPACITY_ATTRIBUTE = "opacity"
SCALE_ATTRIBUTE = "scale"
ORIENT_ATTRIBUTE = "orient"
#: Sphere radius in Gaussian standard deviations (3 sigma holds 99.7 % of the mass on an axis).
DEFAULT_SIGMA_EXTENT = 3.0


def _new_material(name: str) -> tuple[bpy.types.Material, bpy.types.NodeTree]:
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender < 5.0 creates materials without nodes
        material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    return material, tree


def point_cloud_material(name: str = "Recast4D Points", *, unlit: bool = True,
                         color_attribute: str = COLOR_ATTRIBUTE) -> bpy.types.Material:
    """Material colouring each point by ``color_attribute``.

    ``unlit=True`` emits the colour (the points reproduce the video's pixels under any lighting);
    ``unlit=False`` uses it as the base colour of a Principled BSDF.
    """
    material, tree = _new_material(name)
    nodes, links = tree.nodes, tree.links
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_type = "GEOMETRY"
    attribute.attribute_name = color_attribute
    output = nodes.new("ShaderNodeOutputMaterial")
    if unlit:
        shader = nodes.new("ShaderNodeEmission")
        links.new(attribute.outputs["Color"], shader.inputs["Color"])
        shader.inputs["Strength"].default_value = 1.0
        links.new(shader.outputs["Emission"], output.inputs["Surface"])
    else:
        shader = nodes.new("ShaderNodeBsdfPrincipled")
        links.new(attribute.outputs["Color"], shader.inputs["Base Color"])
        links.new(shader.outputs["BSDF"], output.inputs["Surface"])
    material["recast4d_kind"] = "points"
    return material


def splat_material(name: str = "Recast4D Splats", *, sigma_extent: float = DEFAULT_SIGMA_EXTENT,
                   color_attribute: str = COLOR_ATTRIBUTE,
                   opacity_attribute: str = OPACITY_ATTRIBUTE,
                   attribute_type: str = "GEOMETRY") -> bpy.types.Material:
    """Unlit, transparent material approximating a Gaussian splat on a sphere (see module docstring).

    ``attribute_type`` is ``"GEOMETRY"`` for point clouds and ``"INSTANCER"`` for the ellipsoid mode,
    where colour and opacity live on the instances.
    """
    material, tree = _new_material(name)
    nodes, links = tree.nodes, tree.links
    color = nodes.new("ShaderNodeAttribute")
    color.attribute_type = attribute_type
    color.attribute_name = color_attribute
    opacity = nodes.new("ShaderNodeAttribute")
    opacity.attribute_type = attribute_type
    opacity.attribute_name = opacity_attribute
    geometry = nodes.new("ShaderNodeNewGeometry")

    cos_theta = nodes.new("ShaderNodeVectorMath")
    cos_theta.operation = "DOT_PRODUCT"
    links.new(geometry.outputs["Normal"], cos_theta.inputs[0])
    links.new(geometry.outputs["Incoming"], cos_theta.inputs[1])
    cos_sq = _math(nodes, "MULTIPLY")
    links.new(cos_theta.outputs["Value"], cos_sq.inputs[0])
    links.new(cos_theta.outputs["Value"], cos_sq.inputs[1])
    sin_sq = _math(nodes, "SUBTRACT", 1.0)
    links.new(cos_sq.outputs[0], sin_sq.inputs[1])
    exponent = _math(nodes, "MULTIPLY", None, -0.5 * sigma_extent**2)
    links.new(sin_sq.outputs[0], exponent.inputs[0])
    falloff = _math(nodes, "EXPONENT")
    links.new(exponent.outputs[0], falloff.inputs[0])
    alpha = _math(nodes, "MULTIPLY")
    alpha.use_clamp = True
    links.new(falloff.outputs[0], alpha.inputs[0])
    links.new(opacity.outputs["Fac"], alpha.inputs[1])

    emission = nodes.new("ShaderNodeEmission")
    links.new(color.outputs["Color"], emission.inputs["Color"])
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    links.new(alpha.outputs[0], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    material["recast4d_kind"] = "splats"
    return material


def _math(nodes: bpy.types.Nodes, operation: str, a: float | None = None, b: float | None = None) -> bpy.types.Node:
    node = nodes.new("ShaderNodeMath")
    node.operation = operation
    if a is not None:
        node.inputs[0].default_value = a
    if b is not None:
        node.inputs[1].default_value = b
    return node


def splat_geometry_nodes(name: str = "Recast4D Splat Geometry", *, material: bpy.types.Material,
                         sigma_extent: float = DEFAULT_SIGMA_EXTENT,
                         ellipsoids: bool = False) -> bpy.types.NodeTree:
    """Geometry-node group turning Gaussian points into renderable splats.

    Sphere mode: point radius = ``sigma_extent * max(scale.xyz)``. Ellipsoid mode: a unit
    ico-sphere instanced on every point, scaled by ``sigma_extent * scale`` and rotated by ``orient``.
    The material is set on the points (sphere mode) or on the instanced sphere (ellipsoid mode, which
    needs a material reading ``INSTANCER`` attributes).
    """
    tree = bpy.data.node_groups.new(name, "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = tree.nodes, tree.links
    group_in = nodes.new("NodeGroupInput")
    group_out = nodes.new("NodeGroupOutput")
    scale = nodes.new("GeometryNodeInputNamedAttribute")
    scale.data_type = "FLOAT_VECTOR"
    scale.inputs["Name"].default_value = SCALE_ATTRIBUTE
    set_material = nodes.new("GeometryNodeSetMaterial")
    set_material.inputs["Material"].default_value = material

    if ellipsoids:
        orient = nodes.new("GeometryNodeInputNamedAttribute")
        orient.data_type = "QUATERNION"
        orient.inputs["Name"].default_value = ORIENT_ATTRIBUTE
        sphere = nodes.new("GeometryNodeMeshIcoSphere")
        sphere.inputs["Radius"].default_value = 1.0
        sphere.inputs["Subdivisions"].default_value = 2
        smooth = nodes.new("GeometryNodeSetShadeSmooth")
        links.new(sphere.outputs["Mesh"], smooth.inputs["Geometry"])
        links.new(smooth.outputs["Geometry"], set_material.inputs["Geometry"])
        extent = nodes.new("ShaderNodeVectorMath")
        extent.operation = "SCALE"
        extent.inputs["Scale"].default_value = sigma_extent
        links.new(scale.outputs["Attribute"], extent.inputs[0])
        instance = nodes.new("GeometryNodeInstanceOnPoints")
        links.new(group_in.outputs[0], instance.inputs["Points"])
        links.new(set_material.outputs["Geometry"], instance.inputs["Instance"])
        links.new(orient.outputs["Attribute"], instance.inputs["Rotation"])
        links.new(extent.outputs["Vector"], instance.inputs["Scale"])
        links.new(instance.outputs["Instances"], group_out.inputs[0])
    else:
        separate = nodes.new("ShaderNodeSeparateXYZ")
        links.new(scale.outputs["Attribute"], separate.inputs[0])
        max_xy = nodes.new("ShaderNodeMath")
        max_xy.operation = "MAXIMUM"
        links.new(separate.outputs["X"], max_xy.inputs[0])
        links.new(separate.outputs["Y"], max_xy.inputs[1])
        max_xyz = nodes.new("ShaderNodeMath")
        max_xyz.operation = "MAXIMUM"
        links.new(max_xy.outputs[0], max_xyz.inputs[0])
        links.new(separate.outputs["Z"], max_xyz.inputs[1])
        radius = _math(nodes, "MULTIPLY", None, sigma_extent)
        links.new(max_xyz.outputs[0], radius.inputs[0])
        set_radius = nodes.new("GeometryNodeSetPointRadius")
        links.new(group_in.outputs[0], set_radius.inputs["Points"])
        links.new(radius.outputs[0], set_radius.inputs["Radius"])
        links.new(set_radius.outputs["Points"], set_material.inputs["Geometry"])
        links.new(set_material.outputs["Geometry"], group_out.inputs[0])
    tree["recast4d_kind"] = "ellipsoids" if ellipsoids else "splats"
    return tree
