"""Add-on preferences: how to reach (or start) the backend."""

from __future__ import annotations

from dataclasses import dataclass

import bpy

base_package: str = __package__  # the extension package; AddonPreferences are looked up by it


class RECAST4D_AP_preferences(bpy.types.AddonPreferences):
    """Stored in Blender's user preferences, not in the .blend."""

    bl_idname = base_package

    python_path: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Backend Python",
        description="Python interpreter of the Recast 4D backend environment, used by 'Start Local Backend'",
        subtype="FILE_PATH",
        default="",
    )
    connection_file: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Connection File",
        description="Connection file written by 'recast4d serve' (blank: the backend's default location)",
        subtype="FILE_PATH",
        default="",
    )
    use_manual_address: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Manual Address",
        description="Connect to the host, port and key below instead of reading the connection file",
        default=False,
    )
    host: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Host", default="127.0.0.1", description="Manual Address: host name or IP of the backend")
    port: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Port", default=5555, min=1, max=65535, description="Manual Address: TCP port the backend listens on")
    key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Key", description="Hex HMAC key printed by the backend", subtype="PASSWORD", default=""
    )
    server_public_key: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Server Public Key",
        description="The backend's CURVE public key (curve_server_public in its connection file, 40 characters)",
        subtype="PASSWORD", default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "python_path")
        layout.prop(self, "connection_file")
        layout.prop(self, "use_manual_address")
        col = layout.column()
        col.enabled = self.use_manual_address
        col.prop(self, "host")
        col.prop(self, "port")
        col.prop(self, "key")
        col.prop(self, "server_public_key")


@dataclass(frozen=True)
class PreferenceValues:
    """Plain copy of the preferences (defaults when the add-on runs unregistered in tests)."""

    python_path: str = ""
    connection_file: str = ""
    use_manual_address: bool = False
    host: str = "127.0.0.1"
    port: int = 5555
    key: str = ""
    server_public_key: str = ""


def get_preferences(context: bpy.types.Context | None = None) -> PreferenceValues:
    """The add-on's preferences as plain data; defaults if the add-on is not enabled by name."""
    context = context or bpy.context
    addon = context.preferences.addons.get(base_package)
    if addon is None or addon.preferences is None:
        return PreferenceValues()
    p = addon.preferences
    return PreferenceValues(p.python_path, p.connection_file, p.use_manual_address, p.host, p.port, p.key,
                            p.server_public_key)


CLASSES = (RECAST4D_AP_preferences,)
register, unregister = bpy.utils.register_classes_factory(CLASSES)
