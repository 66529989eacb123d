"""Recast 4D wire protocol, cameras and camera paths (numpy, msgpack, pyzmq only)."""
