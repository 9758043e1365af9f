"""Pinned requirements of a model package, and the modules a pickle file refers to.

:func:`resolve_requirements` maps the top-level modules the captured source imports and the artifacts' pickles
refer to onto the installed distributions that provide them (``sklearn`` -> ``scikit-learn==1.9.1``), using
``importlib.metadata.packages_distributions()``. Nothing is imported, and the user's model is never run to find
out what it needs. Standard-library modules need no distribution; ``pyml_jupyter`` is left out because the
serving image carries the runtime itself. A module no installed distribution provides (a local ``utils.py``,
say) is reported as *unresolved*, which fails the contract check: the image could not install it.

:func:`pickled_modules` reads a pickle file, a joblib file or a ``torch.save`` zip without loading it: the pickle
machine runs with every global replaced by an inert stand-in, so nothing is imported and no code from the file
runs; every ``module.name`` the stream refers to is recorded. joblib files are not plain pickles: joblib writes
the bytes of each numpy array right after the pickled ``NumpyArrayWrapper`` that describes it (which is why
``pickletools.genops`` stops there). The scanner reads that description (shape, dtype, alignment padding) and
skips the bytes, or scans the nested pickle joblib writes for arrays of Python objects. Compressed joblib files
(zlib, gzip, bz2, xz, lzma) are decompressed on the fly. For artifacts saved by
:func:`pyml_jupyter.serving.artifacts.save_artifact`, the spec's ``modules`` (recorded while pickling) is
available too; this function serves files written by anything else.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.metadata
import lzma
import os
import pickle
import platform
import re
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

__all__ = ["Requirements", "resolve_requirements", "pickled_modules"]

#: Modules that never become requirements: the runtime ships in the image; ``__main__`` is the notebook.
_NOT_DISTRIBUTED = frozenset({"pyml_jupyter", "__main__"})


@dataclass
class Requirements:
    """The distributions a model package needs, pinned to the versions installed here."""

    pinned: list[str] = field(default_factory=list)  # sorted "name==version"
    unresolved: list[str] = field(default_factory=list)  # modules no installed distribution provides
    python_version: str = field(default_factory=platform.python_version)

    def to_text(self) -> str:
        """The ``requirements.txt`` content."""
        lines = [
            "# Requirements of the model, pinned to the versions installed where it was captured.",
            f"# Python {self.python_version}",
        ]
        if self.unresolved:
            lines.append(
                "# Not provided by any installed distribution (cannot be installed): " + ", ".join(self.unresolved)
            )
        lines.extend(self.pinned)
        return "\n".join(lines) + "\n"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin(distribution: str) -> str | None:
    """``"Name==version"`` for an installed distribution (its name as its metadata spells it), else None."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    name = dist.metadata["Name"] or distribution
    return f"{name}=={dist.version}"


def _providers(module: str, mapping: dict[str, list[str]]) -> list[str]:
    """Distributions providing ``module``; for a namespace package shared by several, the ones with the path."""
    top = module.split(".")[0]
    candidates = sorted(set(mapping.get(top, ())))
    if len(candidates) > 1 and "." in module:
        prefix = module.replace(".", "/") + "/"
        single = module.replace(".", "/") + ".py"
        narrowed = []
        for candidate in candidates:
            try:
                files = importlib.metadata.distribution(candidate).files or []
            except importlib.metadata.PackageNotFoundError:
                continue
            if any(str(f).startswith(prefix) or str(f) == single for f in files):
                narrowed.append(candidate)
        candidates = narrowed or candidates
    return candidates


def resolve_requirements(modules: Iterable[str], extra: Iterable[str] = ()) -> Requirements:
    """Pin the distributions providing ``modules`` (top-level or dotted names), plus the ``extra`` ones.

    ``extra`` are distribution names always added (the caller adds what the runtime needs, numpy and pandas);
    one given with a version specifier (``"torch==2.3.0"``) is kept as written. ``unresolved`` lists the modules
    no installed distribution provides and the ``extra`` distributions that are not installed.
    """
    mapping = importlib.metadata.packages_distributions()
    pinned: dict[str, str] = {}
    unresolved: set[str] = set()
    for module in modules:
        top = module.split(".")[0]
        if not top or top in sys.stdlib_module_names or top in _NOT_DISTRIBUTED:
            continue
        providers = _providers(module, mapping)
        pins = [pin for pin in (_pin(p) for p in providers) if pin]
        if not pins:
            unresolved.add(top)
        for pin in pins:
            pinned.setdefault(_normalize(pin.split("==")[0]), pin)
    for requirement in extra:
        name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
        if not name:
            continue
        if name != requirement.strip():
            pinned[_normalize(name)] = requirement.strip()
            continue
        pin = _pin(name)
        if pin is None:
            unresolved.add(name)
        else:
            pinned.setdefault(_normalize(name), pin)
    return Requirements(
        pinned=sorted(pinned.values(), key=str.lower),
        unresolved=sorted(unresolved),
        python_version=platform.python_version(),
    )


# --------------------------------------------------------------------------------------------------------------
# Scanning pickles


def pickled_modules(path: str | os.PathLike) -> set[str]:
    """Top-level names of the modules a pickle, joblib or ``torch.save`` file refers to, without loading it.

    Raises ``ValueError`` when the file is none of those (or an lz4-compressed joblib file, whose decompressor is
    not in the standard library).
    """
    modules: set[str] = set()
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(0)
        if head.startswith(b"PK\x03\x04"):  # torch.save's zip: the object is archive/data.pkl
            with zipfile.ZipFile(handle) as archive:
                members = [n for n in archive.namelist() if n.endswith(".pkl")]
                if not members:
                    raise ValueError(f"{os.fspath(path)} is a zip file without a pickle inside")
                for member in members:
                    with archive.open(member) as stream:
                        _scan_stream(stream, modules, path)
            return modules
        _scan_stream(_decompressed(handle, head, path), modules, path)
    return modules


def _decompressed(handle: BinaryIO, head: bytes, path: Any) -> BinaryIO:
    """The pickle stream inside ``handle``, decompressing joblib's compressed formats."""
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(handle, mode="rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(handle, mode="rb", format=lzma.FORMAT_XZ)
    if head.startswith(b"\x5d\x00\x00"):
        return lzma.LZMAFile(handle, mode="rb", format=lzma.FORMAT_ALONE)
    if head.startswith(b"\x78"):  # zlib (joblib's compress=True default)
        return _ZlibStream(handle)
    if head.startswith(b"\x04\x22\x4d\x18"):
        raise ValueError(f"{os.fspath(path)} is an lz4-compressed joblib file; it cannot be scanned without lz4")
    if head.startswith(b"ZF"):
        raise ValueError(f"{os.fspath(path)} is a joblib file from joblib < 0.10, which is not supported")
    return handle


class _ZlibStream:
    """A readable stream over zlib-compressed data."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj()
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        out = [self._pending]
        size = len(self._pending)
        while n < 0 or size < n:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                out.append(self._inflate.flush())
                size += len(out[-1])
                break
            out.append(self._inflate.decompress(chunk))
            size += len(out[-1])
        data = b"".join(out)
        if n < 0:
            self._pending = b""
            return data
        self._pending = data[n:]
        return data[:n]


class _Reader:
    """``read``/``readline``/``skip`` over any readable binary stream, knowing when it is exhausted."""

    _CHUNK = 1 << 20

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            data, self._buffer = self._buffer + self._raw.read(), b""
            return data
        while len(self._buffer) < n:
            chunk = self._raw.read(max(n - len(self._buffer), 1 << 16))
            if not chunk:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def readline(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self._raw.read(1 << 12)
            if not chunk:
                break
            self._buffer += chunk
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line

    def skip(self, n: int) -> None:
        while n > 0:
            data = self.read(min(n, self._CHUNK))
            if not data:
                raise ValueError("the file ends in the middle of an array")
            n -= len(data)

    def at_end(self) -> bool:
        if not self._buffer:
            self._buffer = self._raw.read(1)
        return not self._buffer


class _Global:
    """Stands for ``module.name`` in the pickle: calling it builds an inert :class:`_Stub`."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub(self, args)


class _Stub:
    """Stands for any object the pickle builds; accepts what the pickle machine does to objects."""

    def __init__(self, origin: Any = None, args: tuple = ()) -> None:
        self.origin, self.args, self.state = origin, args, None

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub(self, args)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def is_global(self, module: str, name: str) -> bool:
        return isinstance(self.origin, _Global) and (self.origin.module, self.origin.name) == (module, name)


def _skip_bytes(length_format: str, result: Any) -> Any:
    size = struct.calcsize(length_format)

    def load(self: _Scanner) -> None:
        (n,) = struct.unpack(length_format, self.read(size))
        while n > 0:  # through the unframer, in chunks: large payloads are never held in memory
            data = self.read(min(n, _Reader._CHUNK))
            if not data:
                raise pickle.UnpicklingError("the pickle ends in the middle of a bytes object")
            n -= len(data)
        self.append(result())

    return load


class _Scanner(pickle._Unpickler):  # the pure-Python pickle machine, whose steps can be overridden
    """Runs a pickle stream with every global replaced by a :class:`_Global`, recording its module."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, reader: _Reader, modules: set[str]) -> None:
        super().__init__(reader, buffers=iter(lambda: b"", None))
        self.reader = reader
        self.modules = modules

    def find_class(self, module: str, name: str) -> _Global:
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle.Unpickler maps them
            import _compat_pickle

            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        self.modules.add(module.split(".")[0])
        return _Global(module, name)

    def persistent_load(self, pid: Any) -> _Stub:
        return _Stub(pid)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_Stub(cls, args))

    def load_newobj_ex(self) -> None:
        self.stack.pop()  # kwargs
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(_Stub(cls, args))

    def load_build(self) -> None:
        state = self.stack.pop()
        instance = self.stack[-1]
        if isinstance(instance, _Stub):
            instance.state = state
            if instance.is_global("joblib.numpy_pickle", "NumpyArrayWrapper"):
                self._skip_joblib_array(state)

    def _skip_joblib_array(self, state: Any) -> None:
        """Step over the array joblib wrote right after this wrapper (see joblib's ``NumpyArrayWrapper``)."""
        try:
            shape = tuple(int(n) for n in state["shape"])
            dtype = state["dtype"]
            type_code, dtype_state = dtype.args[0], dtype.state
            element_size, flags = int(dtype_state[5]), int(dtype_state[7])
        except Exception as exc:
            raise ValueError(f"unexpected joblib array description: {exc!r}") from exc
        if flags & 1:  # NPY_ITEM_REFCOUNT: Python objects, written as a nested pickle
            _Scanner(self.reader, self.modules).load()
            return
        if state.get("numpy_array_alignment_bytes") is not None:  # joblib >= 1.2 pads to align the data
            padding = self.reader.read(1)
            self.reader.skip(padding[0] if padding else 0)
        if element_size <= 0:
            digits = re.sub(r"\D", "", str(type_code))
            if not digits:
                raise ValueError(f"cannot tell the size of numpy dtype {type_code!r} in a joblib file")
            element_size = int(digits)
        count = 1
        for n in shape:
            count *= n
        self.reader.skip(count * element_size)

    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.SHORT_BINBYTES[0]] = _skip_bytes("<B", bytes)
    dispatch[pickle.BINBYTES[0]] = _skip_bytes("<I", bytes)
    dispatch[pickle.BINBYTES8[0]] = _skip_bytes("<Q", bytes)
    dispatch[pickle.BYTEARRAY8[0]] = _skip_bytes("<Q", bytearray)


def _scan_stream(stream: Any, modules: set[str], path: Any) -> None:
    reader = _Reader(stream)
    if reader.at_end():
        raise ValueError(f"{os.fspath(path)} is empty")
    while not reader.at_end():  # a file may hold several pickles one after the other
        try:
            _Scanner(reader, modules).load()
        except ValueError:
            raise
        except Exception as exc:  # the pickle machine's errors on bytes that are not a pickle (IndexError...)
            raise ValueError(f"{os.fspath(path)} is not a pickle or joblib file this scanner can read: {exc}") from exc
