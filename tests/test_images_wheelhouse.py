"""The host-side wheelhouse: resolved with this machine's pip and its configuration, cached by requirements.

These tests use a private find-links folder and ``PIP_NO_INDEX=1`` (the environment is pip configuration too),
so they need no network and no Docker.
"""

from __future__ import annotations

import io
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from pyml_jupyter.errors import BuildError
from pyml_jupyter.images.wheelhouse import TargetPlatform, ensure_wheelhouse, wheelhouse_key
from pyml_jupyter.progress import Progress

HOST = TargetPlatform.host()

# A PEP 517 backend with no requirements, shipped inside the sdist: building it needs nothing from an index.
BACKEND = textwrap.dedent('''
    import base64, hashlib, os, zipfile

    NAME, VERSION = "pyml_sdist_only", "0.1"

    def _record_line(path, data):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"{path},sha256={digest},{len(data)}"

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        name = f"{NAME}-{VERSION}-py3-none-any.whl"
        info = f"{NAME}-{VERSION}.dist-info"
        files = {
            f"{NAME}/__init__.py": b"VALUE = 42\\n",
            f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode(),
            f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        }
        record = [_record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
            for path, data in files.items():
                zf.writestr(path, data)
            zf.writestr(f"{info}/RECORD", "\\n".join(record) + "\\n")
        return name
''')


def _add(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_sdist(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyml_sdist_only-0.1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        root = "pyml_sdist_only-0.1"
        _add(tar, f"{root}/PKG-INFO", "Metadata-Version: 2.1\nName: pyml_sdist_only\nVersion: 0.1\n")
        _add(tar, f"{root}/pyproject.toml", '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                             'backend-path = ["."]\n')
        _add(tar, f"{root}/backend.py", BACKEND)
    return path


def make_wheel(folder: Path, name: str = "pyml_wheel_only", version: str = "1.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def private_index(tmp_path, monkeypatch) -> Path:
    """A find-links folder standing in for the host's package index (and nothing else)."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PYML_CACHE_DIR", str(tmp_path / "cache"))
    return links


def test_wheels_are_downloaded_with_the_hosts_pip_configuration_and_cached(private_index, tmp_path):
    make_wheel(private_index)
    progress = Progress()
    house = ensure_wheelhouse(["pyml_wheel_only==1.0"], HOST, progress=progress)
    assert house == tmp_path / "cache" / "wheelhouses" / wheelhouse_key(["pyml_wheel_only==1.0"], HOST)
    assert [p.name for p in house.glob("*.whl")] == ["pyml_wheel_only-1.0-py3-none-any.whl"]
    log = progress.tail(500)
    assert any(line.startswith("$ pip download") and "--only-binary=:all:" in line for line in log)
    assert any("Saved" in line for line in log)  # pip's own output is streamed

    # Unchanged requirements: the cache answers and pip does not run again.
    (private_index / "pyml_wheel_only-1.0-py3-none-any.whl").unlink()
    again = Progress()
    assert ensure_wheelhouse(["pyml_wheel_only==1.0"], HOST, progress=again) == house
    assert not any(line.startswith("$ pip") for line in again.tail(500))
    assert any("Using cached wheelhouse" in line for line in again.tail(500))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="targets are Linux images")
def test_an_sdist_only_requirement_is_built_into_a_wheel_on_the_host(private_index):
    make_sdist(private_index)
    progress = Progress()
    house = ensure_wheelhouse(["pyml_sdist_only==0.1"], HOST, progress=progress)
    assert [p.name for p in house.glob("*.whl")] == ["pyml_sdist_only-0.1-py3-none-any.whl"]
    assert any(line.startswith("$ pip wheel") for line in progress.tail(500))


def test_an_sdist_for_another_python_cannot_be_built_here(private_index):
    make_sdist(private_index)
    other = TargetPlatform.for_linux("3.9" if HOST.python_version != "3.9" else "3.10", libc_version="2.36")
    with pytest.raises(BuildError, match="cannot build one for the image"):
        ensure_wheelhouse(["pyml_sdist_only==0.1"], other)


def test_an_unresolvable_requirement_raises_build_error_with_pips_output(private_index, tmp_path):
    with pytest.raises(BuildError) as info:
        ensure_wheelhouse(["pyml_wheel_only==9.9"], HOST)
    assert "resolving dependencies" in info.value.message and "pyml_wheel_only==9.9" in info.value.message
    assert any("pyml_wheel_only" in line for line in info.value.details["log"])
    # A failed resolution leaves nothing behind in the cache.
    assert not list((tmp_path / "cache" / "wheelhouses").iterdir())
