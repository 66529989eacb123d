"""Source hygiene of the wire layer: no unpickling or code evaluation, only the allowed imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "protocol"
WIRE_MODULES = ["wire.py", "arrays.py", "schema.py", "messages.py", "connection.py"]
ALLOWED_THIRD_PARTY = {"numpy", "msgpack", "zmq", "protocol"}
FORBIDDEN_NAMES = {"pickle", "cPickle", "dill", "marshal", "shelve", "msgpack_numpy", "recv_pyobj", "send_pyobj",
                   "eval", "exec", "loads_pickle", "__import__"}


@pytest.mark.parametrize("name", WIRE_MODULES)
def test_no_pickle_eval_or_exec(name: str) -> None:
    tree = ast.parse((PROTOCOL_DIR / name).read_text())
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            used.add(node.module.split(".")[0])
    assert not used & FORBIDDEN_NAMES


@pytest.mark.parametrize("name", WIRE_MODULES)
def test_imports_only_stdlib_numpy_msgpack_zmq(name: str) -> None:
    tree = ast.parse((PROTOCOL_DIR / name).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots - sys.stdlib_module_names - ALLOWED_THIRD_PARTY == set()
