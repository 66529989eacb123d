"""Models folder resolution, engine registry, doctor status and missing-weights errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.engines.registry import (
    MODELS_ENV,
    engine_status,
    get_depth_engine,
    get_inpaint_engine,
    list_engines,
    resolve_lora,
    resolve_models_dir,
)
from protocol.errors import MissingWeightsError, ValidationError


def test_models_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert resolve_models_dir() == Path("~/.cache/recast4d/models").expanduser()
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "env"))
    assert resolve_models_dir() == tmp_path / "env"
    assert resolve_models_dir(tmp_path / "arg") == tmp_path / "arg"


def test_registry_lists_both_kinds() -> None:
    inpaint = {spec.name for spec in list_engines("inpaint")}
    depth = {spec.name for spec in list_engines("depth")}
    assert {"classical", "wan-vace"} <= inpaint
    assert {"given", "depth-anything"} <= depth
    wan = next(spec for spec in list_engines("inpaint") if spec.name == "wan-vace")
    assert [w.name for w in wan.weights] == ["Wan2.1-VACE-1.3B-diffusers"]


def test_status_of_empty_models_folder(tmp_path: Path) -> None:
    status = {s.name: s for s in engine_status(tmp_path)}
    assert status["classical"].usable and status["given"].usable
    wan = status["wan-vace"]
    assert not wan.usable and wan.kind == "inpaint"
    assert "Wan2.1-VACE-1.3B-diffusers" in wan.reason
    assert str(tmp_path / "Wan2.1-VACE-1.3B-diffusers") in wan.hint
    assert not status["depth-anything"].usable
    assert "Depth-Anything-V2-Small-hf" in status["depth-anything"].reason


def test_incomplete_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "Wan2.1-VACE-1.3B-diffusers").mkdir()
    wan = next(s for s in engine_status(tmp_path) if s.name == "wan-vace")
    assert not wan.usable and "model_index.json" in wan.reason


def test_status_with_tiny_models(tiny_models_dir: Path) -> None:
    status = {s.name: s for s in engine_status(tiny_models_dir)}
    assert status["wan-vace"].usable, status["wan-vace"].reason
    assert status["depth-anything"].usable, status["depth-anything"].reason
    assert not status["wan-vace-14b"].usable


def test_missing_weights_error_names_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as error:
        get_inpaint_engine("wan-vace", tmp_path)
    assert "Wan2.1-VACE-1.3B-diffusers" in str(error.value) and str(tmp_path) in str(error.value)
    assert error.value.code == "missing_weights"
    with pytest.raises(MissingWeightsError, match="Depth-Anything-V2-Small-hf"):
        get_depth_engine("depth-anything", tmp_path)


def test_unknown_engine_and_options(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="known inpaint engines: classical"):
        get_inpaint_engine("nope", tmp_path)
    with pytest.raises(ValidationError, match="unknown options"):
        get_inpaint_engine("classical", tmp_path, radius=3)


def test_resolve_lora_by_path_and_id(tmp_path: Path) -> None:
    (tmp_path / "loras" / "style").mkdir(parents=True)
    (tmp_path / "loras" / "other.safetensors").write_bytes(b"")
    assert resolve_lora("style", tmp_path) == tmp_path / "loras" / "style"
    assert resolve_lora("other", tmp_path) == tmp_path / "loras" / "other.safetensors"
    assert resolve_lora(str(tmp_path / "loras" / "style")) == tmp_path / "loras" / "style"
    with pytest.raises(MissingWeightsError, match="missing-lora"):
        resolve_lora("missing-lora", tmp_path)
