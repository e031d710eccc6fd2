"""Snapshots: a whole world saved as data, the same bytes for the same state, loaded without trust.

A snapshot is an .npz file (:mod:`runtime.kernel.array_files`): the member ``tree`` holds a JSON
description of the object graph, and every numpy array is a member of its own. The tree encodes:

* ``None``, booleans, integers and strings as themselves; floats as their hex form (exact, NaN and
  infinities included); bytes as hex;
* lists, tuples, sets (sorted, so their bytes do not depend on hashing) and dicts (as key-value
  pairs in insertion order);
* numpy arrays, scalars and random generators (the bit generator's state); ``random.Random``
  (its state); paths; enum members; pydantic models (their fields, validated again on loading);
* instances of allowed classes by their attributes (``__getstate__``/``__setstate__`` when the
  class defines them), with shared objects and cycles kept as references;
* methods bound to such instances (a handler, a callback), by their name, and partial applications
  of them: a method of the object's own class, never a function from elsewhere.

Loading calls no constructor and no function named in the file: objects are made with
``cls.__new__`` and their attributes set, for classes of the modules the caller allows (Agora's
packages, and the modules of a scenario's own roles). Anything else -- a function, a thread, an
open file, a class from elsewhere -- is refused by name when saving and when loading, with the
path of the attribute that holds it. The last 32 bytes of the file are a SHA-256 of the rest.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib
import inspect
import json
import random
import types
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from pydantic import BaseModel

from runtime.kernel.array_files import ArrayFileError, npz_bytes, read_npz

FORMAT = "agora-snapshot-1"
AGORA_MODULES = ("runtime", "agents", "economy", "environments", "agora")


class SnapshotError(Exception):
    """A snapshot that cannot be written or read (the message names the object and why)."""


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _has_own(cls: type, name: str) -> bool:
    return any(name in vars(base) for base in cls.__mro__ if base is not object)


def _allowed(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in allowed)


class _Encoder:
    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.arrays: dict[str, np.ndarray] = {}
        self.memo: dict[int, int] = {}
        self.keep: list[object] = []  # holds encoded objects alive so their ids stay unique

    def _ref(self, obj: object) -> dict[str, Any] | None:
        key = self.memo.get(id(obj))
        return None if key is None else {"ref": key}

    def _new_id(self, obj: object) -> int:
        key = len(self.memo)
        self.memo[id(obj)] = key
        self.keep.append(obj)
        return key

    def encode(self, obj: Any, path: str) -> Any:
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int) and not isinstance(obj, enum.Enum):
            return obj if type(obj) is int else self._numpy_scalar(obj, path)
        if isinstance(obj, float):
            return {"f": float(obj).hex()} if type(obj) is float else self._numpy_scalar(obj, path)
        if isinstance(obj, np.generic):
            return self._numpy_scalar(obj, path)
        if isinstance(obj, bytes):
            return {"b": obj.hex()}
        ref = self._ref(obj)
        if ref is not None:
            return ref
        return self._compound(obj, path)

    def _numpy_scalar(self, obj: Any, path: str) -> dict[str, Any]:
        value = np.asarray(obj)
        if value.dtype.hasobject:
            raise SnapshotError(f"{path}: an object scalar cannot be saved")
        return {"n": value.dtype.str, "v": value.tobytes().hex()}

    def _compound(self, obj: Any, path: str) -> dict[str, Any]:
        if isinstance(obj, list):
            key = self._new_id(obj)
            return {"l": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)], "id": key}
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return {"t": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, (set, frozenset)):
            items = [self.encode(v, f"{path}{{}}") for v in obj]
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
            return {"fs" if isinstance(obj, frozenset) else "s": items}
        if isinstance(obj, dict):
            if type(obj) is not dict:
                raise SnapshotError(
                    f"{path}: a {type(obj).__name__} cannot be saved (plain dicts only)"
                )
            key = self._new_id(obj)
            pairs = [
                [self.encode(k, f"{path}.keys()"), self.encode(v, f"{path}[{k!r}]")]
                for k, v in obj.items()
            ]
            return {"d": pairs, "id": key}
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise SnapshotError(
                    f"{path}: an object array cannot be saved; keep numbers in arrays"
                )
            key = self._new_id(obj)
            name = f"a{len(self.arrays)}"
            self.arrays[name] = obj
            return {"a": name, "id": key}
        return self._special(obj, path)

    def _special(self, obj: Any, path: str) -> dict[str, Any]:
        if isinstance(obj, np.random.Generator):
            key = self._new_id(obj)
            return {"gen": self.encode(obj.bit_generator, f"{path}.bit_generator"), "id": key}
        if isinstance(obj, np.random.BitGenerator):
            key = self._new_id(obj)
            return {
                "bitgen": type(obj).__name__,
                "state": self.encode(obj.state, f"{path}.state"),
                "id": key,
            }
        if isinstance(obj, random.Random):
            key = self._new_id(obj)
            return {"random": self.encode(obj.getstate(), f"{path}.state"), "id": key}
        if isinstance(obj, PurePath):
            return {"path": str(obj)}
        if isinstance(obj, enum.Enum):
            return {"enum": _class_path(type(obj)), "v": self.encode(obj.value, path)}
        if isinstance(obj, types.MethodType):
            return {
                "method": obj.__func__.__name__,
                "self": self.encode(obj.__self__, f"{path}.__self__"),
            }
        if isinstance(obj, functools.partial):
            return {
                "partial": self.encode(obj.func, f"{path}.func"),
                "args": self.encode(list(obj.args), f"{path}.args"),
                "kw": self.encode(dict(obj.keywords), f"{path}.keywords"),
            }
        if isinstance(obj, BaseModel):
            key = self._new_id(obj)
            fields = self.encode(obj.model_dump(mode="python"), f"{path}.fields")
            return {"model": _class_path(type(obj)), "v": fields, "id": key}
        return self._instance(obj, path)

    def _instance(self, obj: Any, path: str) -> dict[str, Any]:
        cls = type(obj)
        if not _allowed(cls.__module__, self.allowed) or isinstance(obj, type):
            raise SnapshotError(
                f"{path}: a {cls.__module__}.{cls.__qualname__} cannot be saved in a checkpoint: a "
                "world's state is numbers, arrays, containers and objects of its own classes "
                "(functions, threads, files and other live objects are rebuilt, not saved)"
            )
        key = self._new_id(obj)
        if _has_own(cls, "__getstate__"):
            state = obj.__getstate__()
        elif hasattr(obj, "__dict__"):
            state = dict(vars(obj))
        else:
            state = {
                name: getattr(obj, name)
                for c in cls.__mro__
                for name in getattr(c, "__slots__", ())
                if hasattr(obj, name)
            }
        if isinstance(state, dict):  # attributes: paths read as world.populations[2].policy.w1
            pairs = [
                [self.encode(k, f"{path}.keys()"), self.encode(v, f"{path}.{k}")]
                for k, v in state.items()
            ]
            return {"o": _class_path(cls), "v": {"d": pairs}, "id": key}
        return {"o": _class_path(cls), "v": self.encode(state, f"{path}.{cls.__name__}"), "id": key}


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], allowed: tuple[str, ...]) -> None:
        self.arrays = arrays
        self.allowed = allowed
        self.objects: dict[int, Any] = {}

    def _class(self, spec: str, path: str) -> type[Any]:
        module, _, qualname = spec.partition(":")
        if not _allowed(module, self.allowed):
            raise SnapshotError(
                f"{path}: class {spec} is not one a snapshot may hold "
                f"(allowed: modules {', '.join(self.allowed)})"
            )
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise SnapshotError(f"{path}: class {spec} cannot be found ({exc})") from None
        if not isinstance(obj, type):
            raise SnapshotError(f"{path}: {spec} is not a class")
        return obj

    def decode(self, node: Any, path: str) -> Any:
        if node is None or isinstance(node, (bool, int, str)):
            return node
        if isinstance(node, list):
            raise SnapshotError(f"{path}: a bare list in the tree")
        if not isinstance(node, dict):
            raise SnapshotError(f"{path}: unexpected {type(node).__name__} in the tree")
        if "ref" in node:
            try:
                return self.objects[node["ref"]]
            except (KeyError, TypeError):
                raise SnapshotError(
                    f"{path}: a reference to an object that is not in the tree"
                ) from None
        return self._value(node, path)

    def _register(self, node: dict[str, Any], obj: Any) -> Any:
        if "id" in node:
            self.objects[node["id"]] = obj
        return obj

    def _value(self, node: dict[str, Any], path: str) -> Any:
        if "f" in node:
            return float.fromhex(node["f"])
        if "b" in node:
            return bytes.fromhex(node["b"])
        if "n" in node:
            return np.frombuffer(bytes.fromhex(node["v"]), dtype=np.dtype(node["n"]))[0]
        if "l" in node:
            out: list[Any] = self._register(node, [])
            out.extend(self.decode(v, f"{path}[{i}]") for i, v in enumerate(node["l"]))
            return out
        if "t" in node:
            return tuple(self.decode(v, f"{path}[{i}]") for i, v in enumerate(node["t"]))
        if "s" in node or "fs" in node:
            members = node["s"] if "s" in node else node["fs"]
            items = [self.decode(v, f"{path}{{}}") for v in members]
            return set(items) if "s" in node else frozenset(items)
        if "d" in node:
            table: dict[Any, Any] = self._register(node, {})
            for pair in node["d"]:
                table[self.decode(pair[0], f"{path}.keys()")] = self.decode(pair[1], f"{path}[...]")
            return table
        if "a" in node:
            if node["a"] not in self.arrays:
                raise SnapshotError(f"{path}: array {node['a']} is missing from the snapshot")
            return self._register(node, self.arrays[node["a"]])
        return self._special(node, path)

    def _special(self, node: dict[str, Any], path: str) -> Any:
        if "bitgen" in node:
            kinds = {
                "Philox": np.random.Philox,
                "PCG64": np.random.PCG64,
                "PCG64DXSM": np.random.PCG64DXSM,
                "MT19937": np.random.MT19937,
                "SFC64": np.random.SFC64,
            }
            if node["bitgen"] not in kinds:
                raise SnapshotError(f"{path}: unknown bit generator {node['bitgen']!r}")
            bitgen = self._register(node, kinds[node["bitgen"]]())
            try:
                bitgen.state = self.decode(node["state"], f"{path}.state")
            except (TypeError, ValueError, KeyError) as exc:
                raise SnapshotError(f"{path}: bad bit generator state ({exc})") from None
            return bitgen
        if "gen" in node:
            bitgen = self.decode(node["gen"], f"{path}.bit_generator")
            if not isinstance(bitgen, np.random.BitGenerator):
                raise SnapshotError(f"{path}: a generator without a bit generator")
            return self._register(node, np.random.Generator(bitgen))
        if "random" in node:
            rand = self._register(node, random.Random())
            state = self.decode(node["random"], f"{path}.state")
            try:
                rand.setstate(state)
            except (TypeError, ValueError) as exc:
                raise SnapshotError(f"{path}: bad random state ({exc})") from None
            return rand
        if "path" in node:
            return Path(node["path"])
        if "enum" in node:
            cls = self._class(node["enum"], path)
            try:
                return cls(self.decode(node["v"], path))
            except (ValueError, TypeError) as exc:
                raise SnapshotError(f"{path}: bad {cls.__name__} value ({exc})") from None
        if "model" in node:
            cls = self._class(node["model"], path)
            if not issubclass(cls, BaseModel):
                raise SnapshotError(f"{path}: {node['model']} is not a model")
            try:
                return self._register(node, cls.model_validate(self.decode(node["v"], path)))
            except ValueError as exc:
                raise SnapshotError(f"{path}: {cls.__name__} does not validate ({exc})") from None
        if "o" in node:
            return self._instance(node, path)
        if "method" in node:
            owner = self.decode(node["self"], f"{path}.__self__")
            name = node["method"]
            function = getattr(type(owner), name, None) if isinstance(name, str) else None
            if (
                not inspect.isfunction(function)
                or name.startswith("__")
                or not _allowed(type(owner).__module__, self.allowed)
            ):
                raise SnapshotError(f"{path}: {name!r} is not a method of {type(owner).__name__}")
            return getattr(owner, name)
        if "partial" in node:
            function = self.decode(node["partial"], f"{path}.func")
            if not isinstance(function, types.MethodType):
                raise SnapshotError(
                    f"{path}: a partial application of something other than a method"
                )
            args = self.decode(node["args"], f"{path}.args")
            keywords = self.decode(node["kw"], f"{path}.keywords")
            if not isinstance(args, list) or not isinstance(keywords, dict):
                raise SnapshotError(f"{path}: a malformed partial application")
            return functools.partial(function, *args, **keywords)
        raise SnapshotError(f"{path}: unknown node {sorted(node)}")

    def _instance(self, node: dict[str, Any], path: str) -> Any:
        cls = self._class(node["o"], path)
        # No constructor runs: the class's own __new__ makes a bare instance.
        make_bare: Any = cls.__new__
        obj = self._register(node, make_bare(cls))
        state = self.decode(node["v"], f"{path}.{cls.__name__}")
        if _has_own(cls, "__setstate__"):
            obj.__setstate__(state)
        elif isinstance(state, dict):
            for name, value in state.items():
                object.__setattr__(obj, name, value)
        else:
            raise SnapshotError(f"{path}: {cls.__name__}'s state is not a mapping")
        return obj


def dumps(root: Any, allowed_modules: Iterable[str] = AGORA_MODULES) -> bytes:
    """The snapshot bytes of ``root`` (module docstring); SnapshotError names what cannot be
    saved."""
    encoder = _Encoder(tuple(allowed_modules))
    tree = encoder.encode(root, "world")
    text = json.dumps({"format": FORMAT, "tree": tree}, separators=(",", ":")).encode()
    body = npz_bytes({"tree": np.frombuffer(text, dtype=np.uint8), **encoder.arrays})
    return body + hashlib.sha256(body).digest()


def loads(data: bytes, allowed_modules: Iterable[str] = AGORA_MODULES) -> Any:
    """The object graph of :func:`dumps` bytes; SnapshotError if altered, damaged or not allowed."""
    if len(data) < 32 or hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise SnapshotError("the snapshot's checksum does not match its bytes: damaged or altered")
    try:
        arrays = read_npz(data[:-32])
    except ArrayFileError as exc:
        raise SnapshotError(str(exc)) from None
    tree = arrays.pop("tree", None)
    try:
        doc = json.loads(bytes(tree)) if tree is not None and tree.dtype == np.uint8 else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotError(f"not an Agora snapshot (expected format {FORMAT})")
    return _Decoder(arrays, tuple(allowed_modules)).decode(doc.get("tree"), "world")


def save(path: Path, root: Any, allowed_modules: Iterable[str] = AGORA_MODULES) -> str:
    """Write ``root``'s snapshot to ``path`` (through a temporary name); return its SHA-256
    (hex)."""
    data = dumps(root, allowed_modules)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def load(path: Path, allowed_modules: Iterable[str] = AGORA_MODULES) -> Any:
    """Read a snapshot written by :func:`save`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return loads(data, allowed_modules)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    except (RecursionError, MemoryError) as exc:
        raise SnapshotError(
            f"{path}: too deep or too large to load ({type(exc).__name__})"
        ) from None
