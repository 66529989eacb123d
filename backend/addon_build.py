"""Build the installable Blender extension: ``dist/recast4d-<version>.zip``.

Layout of the zip (the extension's package root, ``bl_ext.<repo>.recast4d`` once installed)::

    blender_manifest.toml        the top-level product card, ``wheels`` rewritten to what is packed
    __init__.py, *.py            the contents of ``addon/``
    protocol/                    a copy of the repo's ``protocol/`` package
    wheels/*.whl                 unmodified upstream pyzmq and msgpack wheels

How the add-on finds ``protocol``: ``addon/deps.py`` first tries the bundled copy
(``from . import protocol``, i.e. ``bl_ext.<repo>.recast4d.protocol``) and falls back to the
top-level ``protocol`` package of a development checkout. Inside the copy, any absolute
``protocol.`` import is rewritten to a relative one so that the bundled copy never pulls in a
different ``protocol`` from ``sys.path``.

Wheels are fetched with ``pip download --only-binary=:all: --platform ... --python-version ...
--no-deps`` into ``~/.cache/recast4d/wheels`` (override with ``RECAST4D_WHEEL_CACHE``) and reused.

Usage::

    python -m backend.addon_build [--out dist] [--offline] [--no-wheels]   (what `make addon` runs)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_NAME = "blender_manifest.toml"

#: Wheels the add-on needs inside Blender (numpy ships with Blender; torch never goes there).
PINNED_PACKAGES: tuple[str, ...] = ("pyzmq==27.3.0", "msgpack==1.2.4")
#: CPython versions: 3.11 for Blender 4.2-5.0, 3.13 for Blender 5.1 and later.
PYTHON_VERSIONS: tuple[str, ...] = ("3.11", "3.13")
#: Blender platform name -> pip platform tags to try (pip also accepts older compatible tags).
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x64": ("manylinux_2_28_x86_64",),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_10_15_x86_64",),
}

_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
_ABSOLUTE_IMPORT = re.compile(r"^(\s*)(from|import)\s+protocol(\.[\w.]+)?(\s|$)", re.MULTILINE)


class BuildError(RuntimeError):
    """The extension could not be built (missing files, wheel download failed...)."""


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the zip path, the extension version and the wheel names inside."""

    zip_path: Path
    version: str
    wheels: tuple[str, ...]


def wheel_cache_dir() -> Path:
    """Folder where downloaded wheels are kept between builds."""
    env = os.environ.get("RECAST4D_WHEEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "recast4d" / "wheels"


def fetch_wheels(cache: Path, *, offline: bool = False) -> list[Path]:
    """Download (or reuse) one wheel per package x Python version x platform into ``cache``.

    Returns the sorted, de-duplicated wheel paths (a universal2 macOS wheel can serve two
    platforms). Raises :class:`BuildError` if a wheel is missing and cannot be downloaded.
    """
    cache.mkdir(parents=True, exist_ok=True)
    for requirement in PINNED_PACKAGES:
        name, version = requirement.split("==")
        for py in PYTHON_VERSIONS:
            for platform, tags in PLATFORM_TAGS.items():
                if _cached_wheel(cache, name, version, py, platform) is not None:
                    continue
                if offline:
                    raise BuildError(f"no cached wheel for {requirement} / Python {py} / {platform} in {cache}")
                cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                       "--only-binary=:all:", "--no-deps", "--python-version", py, "--dest", str(cache)]
                for tag in tags:
                    cmd += ["--platform", tag]
                cmd.append(requirement)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0 or _cached_wheel(cache, name, version, py, platform) is None:
                    raise BuildError(f"could not download {requirement} for Python {py} on {platform}:\n"
                                     f"{proc.stderr.strip()[-2000:]}")
    wheels: set[Path] = set()
    for requirement in PINNED_PACKAGES:
        name, version = requirement.split("==")
        for py in PYTHON_VERSIONS:
            for platform in PLATFORM_TAGS:
                found = _cached_wheel(cache, name, version, py, platform)
                assert found is not None
                wheels.add(found)
    return sorted(wheels)


def _cached_wheel(cache: Path, name: str, version: str, py: str, platform: str) -> Path | None:
    """The cached wheel of ``name==version`` usable by CPython ``py`` on Blender ``platform``, if any."""
    cp = "cp" + py.replace(".", "")
    for path in sorted(cache.glob(f"{name}-{version}-*.whl")):
        _, _, python_tag, abi_tag, platform_tag = path.stem.split("-", 4)
        exact = python_tag == cp
        stable_abi = abi_tag == "abi3" and python_tag.startswith("cp3") and int(python_tag[3:]) <= int(cp[3:])
        if (exact or stable_abi) and _platform_matches(platform_tag, platform):
            return path
    return None


def _platform_matches(platform_tag: str, platform: str) -> bool:
    tags = platform_tag.split(".")
    if platform == "linux-x64":
        return any(t.startswith("manylinux") and t.endswith("x86_64") for t in tags)
    if platform == "windows-x64":
        return "win_amd64" in tags
    if platform == "macos-arm64":
        return any(t.startswith("macosx") and (t.endswith("arm64") or t.endswith("universal2")) for t in tags)
    if platform == "macos-x64":
        return any(t.startswith("macosx") and (t.endswith("x86_64") or t.endswith("universal2")) for t in tags)
    return False


def render_manifest(manifest_text: str, wheel_names: list[str]) -> str:
    """Return ``manifest_text`` with its ``wheels = [...]`` list replaced by ``wheel_names``.

    With no wheels the key is removed (the manifest forbids empty lists).
    """
    block = re.compile(r"^wheels\s*=\s*\[.*?\][ \t]*\n", re.MULTILINE | re.DOTALL)
    if wheel_names:
        lines = "".join(f'  "./wheels/{name}",\n' for name in wheel_names)
        new_block = f"wheels = [\n{lines}]\n"
    else:
        new_block = ""
    if block.search(manifest_text):
        return block.sub(lambda _m: new_block, manifest_text, count=1)
    head, sep, tail = manifest_text.partition("[permissions]")
    return head + new_block + "\n" + sep + tail if sep else manifest_text + "\n" + new_block


def relativize_protocol_imports(source: str, depth: int) -> str:
    """Rewrite absolute ``protocol`` imports in a module ``depth`` packages below ``protocol/``.

    ``from protocol.camera import Camera`` in ``protocol/paths/presets.py`` (depth 1) becomes
    ``from ..camera import Camera``. ``import protocol.x`` has no relative form and is refused.
    """

    def replace(match: re.Match[str]) -> str:
        indent, keyword, rest, trailing = match.groups()
        if keyword == "import":
            raise BuildError("the protocol package must not use 'import protocol...' (use relative imports)")
        dots = "." * (depth + 1)
        target = dots + (rest[1:] if rest else "")
        return f"{indent}from {target}{trailing}"

    return _ABSOLUTE_IMPORT.sub(replace, source)


def _iter_package_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part in _SKIP_DIRS or part.startswith(".") for part in path.parts):
            continue
        if path.suffix in {".py", ".toml", ".json", ".txt"}:
            files.append(path)
    return files


def build_extension(out_dir: Path, *, offline: bool = False, with_wheels: bool = True,
                    wheel_cache: Path | None = None, repo_root: Path = REPO_ROOT) -> BuildResult:
    """Build the extension zip into ``out_dir`` and return what was built."""
    manifest_path = repo_root / MANIFEST_NAME
    addon_dir = repo_root / "addon"
    protocol_dir = repo_root / "protocol"
    for needed in (manifest_path, addon_dir / "__init__.py", protocol_dir / "__init__.py"):
        if not needed.exists():
            raise BuildError(f"missing {needed}")
    manifest_text = manifest_path.read_text(encoding="utf-8")
    manifest = tomllib.loads(manifest_text)
    version, ext_id = manifest["version"], manifest["id"]
    if (addon_dir / "protocol").exists():
        raise BuildError("addon/protocol exists; the build places the protocol copy there itself")

    wheels = fetch_wheels(wheel_cache or wheel_cache_dir(), offline=offline) if with_wheels else []
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{ext_id}-{version}.zip"
    tmp_path = zip_path.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST_NAME, render_manifest(manifest_text, [w.name for w in wheels]))
        for path in _iter_package_files(addon_dir):
            zf.write(path, path.relative_to(addon_dir).as_posix())
        for path in _iter_package_files(protocol_dir):
            rel = path.relative_to(protocol_dir)
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".py":
                text = relativize_protocol_imports(text, depth=len(rel.parts) - 1)
            zf.writestr(f"protocol/{rel.as_posix()}", text)
        for wheel in wheels:
            zf.write(wheel, f"wheels/{wheel.name}", compress_type=zipfile.ZIP_STORED)
    tmp_path.replace(zip_path)
    return BuildResult(zip_path, version, tuple(w.name for w in wheels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--offline", action="store_true", help="use cached wheels only, never download")
    parser.add_argument("--no-wheels", action="store_true", help="leave the wheels out (development only)")
    args = parser.parse_args(argv)
    try:
        result = build_extension(args.out, offline=args.offline, with_wheels=not args.no_wheels)
    except BuildError as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    print(f"built {result.zip_path} (version {result.version}, {len(result.wheels)} wheels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
