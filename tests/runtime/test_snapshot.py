"""Snapshots as data: exact round trips, the same bytes in any process, nothing run on loading."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from runtime.kernel.array_files import ArrayFileError, npz_bytes, read_npz
from runtime.record import snapshot
from runtime.record.snapshot import SnapshotError

ALLOWED = (*snapshot.AGORA_MODULES, "tests")


@dataclass
class Node:
    """An object of an allowed module: attributes, shared references, a cycle, a bound method."""

    name: str
    values: np.ndarray
    peers: list[Node] = field(default_factory=list)
    handler: object = None

    def hello(self, who: str) -> str:
        return f"{self.name} greets {who}"


@dataclass(frozen=True)
class Frozen:
    key: tuple[int, int]
    tags: frozenset[str]


def _graph() -> Node:
    shared = np.arange(6, dtype=np.int64).reshape(2, 3)
    a = Node("a", shared)
    b = Node("b", shared, [a])
    a.peers.append(b)  # a cycle
    a.handler = b.hello
    b.handler = functools.partial(a.hello, "you")
    return a


def test_round_trip_keeps_values_sharing_cycles_and_methods():
    stream = np.random.Generator(np.random.Philox(7))
    stream.random(5)
    root = {
        "graph": _graph(),
        "floats": [0.1, float("nan"), -float("inf"), 5e-324],
        "big": 2**80,
        "bytes": b"\x00\xff",
        "tuple": (1, "x", None),
        "set": {3, 1, 2},
        "frozen": Frozen((1, 2), frozenset("ab")),
        (1, 2): "tuple key",
        "stream": stream,
        "path": Path("/x/y"),
        "scalar": np.float32(1.5),
        "flag": np.bool_(True),
    }
    back = snapshot.loads(snapshot.dumps(root, ALLOWED), ALLOWED)
    g = back["graph"]
    assert g.peers[0].peers[0] is g and g.values is g.peers[0].values
    assert np.array_equal(g.values, np.arange(6).reshape(2, 3))
    assert g.handler("me") == "b greets me" and g.peers[0].handler() == "a greets you"
    floats = back["floats"]
    assert floats[0] == 0.1 and np.isnan(floats[1]) and floats[2] == -np.inf and floats[3] == 5e-324
    assert back["big"] == 2**80 and back["bytes"] == b"\x00\xff" and back["tuple"] == (1, "x", None)
    assert back["set"] == {1, 2, 3} and back["frozen"] == Frozen((1, 2), frozenset("ab"))
    assert back[(1, 2)] == "tuple key" and back["path"] == Path("/x/y")
    assert back["scalar"].dtype == np.float32
    assert isinstance(back["flag"], (bool, np.bool_)) and bool(back["flag"])
    assert back["stream"].random() == stream.random()  # the generator goes on where it stopped


def test_the_same_state_gives_the_same_bytes_in_any_process():
    # Sets of strings iterate in an order that depends on the process's hash seed; snapshots sort
    # them.
    code = (
        "import sys, hashlib; sys.path.insert(0, sys.argv[1]); from runtime.record import "
        "snapshot; "
        "print(hashlib.sha256(snapshot.dumps({'s': {'alpha', 'beta', 'gamma', 'delta'}, "
        "'f': frozenset(['x', 'y', 'z'])})).hexdigest())"
    )
    root = str(Path(__file__).resolve().parents[2])
    digests = {
        subprocess.run(
            [sys.executable, "-c", code, root],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


@pytest.mark.parametrize("bad", [lambda: 1, threading.Lock(), open, os])
def test_live_objects_are_refused_when_saving_with_their_path(bad):
    with pytest.raises(SnapshotError, match=r"world\[1\]\.handler: .* cannot be saved"):
        snapshot.dumps([0, Node("n", np.zeros(1), handler=bad)], ALLOWED)


def _craft(tree: object) -> bytes:
    text = json.dumps({"format": snapshot.FORMAT, "tree": tree}).encode()
    body = npz_bytes({"tree": np.frombuffer(text, dtype=np.uint8)})
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (
            {"o": "os:system", "v": {"d": []}, "id": 0},
            "class os:system is not one a snapshot may hold",
        ),
        ({"o": "subprocess:Popen", "v": {"d": []}, "id": 0}, "is not one a snapshot may hold"),
        ({"model": "builtins:dict", "v": {"d": []}}, "is not one a snapshot may hold"),
        (
            {
                "method": "__init__",
                "self": {"o": "runtime.kernel.clock:Clock", "v": {"d": []}, "id": 0},
            },
            "is not a method",
        ),
        (
            {
                "method": "system",
                "self": {"o": "runtime.kernel.clock:Clock", "v": {"d": []}, "id": 0},
            },
            "is not a method",
        ),
        (
            {"partial": {"path": "/bin/sh"}, "args": {"l": [], "id": 1}, "kw": {"d": [], "id": 2}},
            "other than a method",
        ),
        ({"ref": 99}, "a reference to an object that is not in the tree"),
        ({"a": "a7", "id": 0}, "array a7 is missing"),
        ({"bitgen": "Evil", "state": {"d": []}, "id": 0}, "unknown bit generator"),
        ([1, 2], "a bare list"),
    ],
)
def test_a_crafted_snapshot_runs_nothing_and_names_what_it_refuses(tree, message):
    with pytest.raises(SnapshotError, match=message):
        snapshot.loads(_craft(tree), ALLOWED)


def test_damaged_bytes_and_other_files_are_refused():
    data = bytearray(snapshot.dumps({"x": np.arange(100)}, ALLOWED))
    data[40] ^= 1
    with pytest.raises(SnapshotError, match="checksum does not match"):
        snapshot.loads(bytes(data), ALLOWED)
    with pytest.raises(SnapshotError, match="checksum"):
        snapshot.loads(b"short", ALLOWED)
    other = npz_bytes({"tree": np.frombuffer(b'{"format": "x"}', dtype=np.uint8)})
    with pytest.raises(SnapshotError, match="not an Agora snapshot"):
        snapshot.loads(other + hashlib.sha256(other).digest(), ALLOWED)


def test_array_files_are_the_same_bytes_every_time_and_refuse_what_is_not_numbers():
    arrays = {"a": np.arange(5), "b": np.eye(2)}
    assert npz_bytes(arrays) == npz_bytes(arrays)
    back = read_npz(npz_bytes(arrays))
    assert list(back) == ["a", "b"] and np.array_equal(back["b"], np.eye(2))
    with pytest.raises(ArrayFileError, match="not an .npz file"):
        read_npz(b"not a zip at all")
    with pytest.raises(ArrayFileError, match="object array"):
        npz_bytes({"o": np.array([object()])})
    strings = npz_bytes({"s": np.array(["role"])})
    with pytest.raises(ArrayFileError, match="expected numbers"):
        read_npz(strings)
    assert read_npz(strings, strings=True)["s"][0] == "role"
    # A header that claims a shape of 10^12 is refused before anything is allocated.
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("huge.npy", member.getvalue() + b"\0" * 64)
    with pytest.raises(ArrayFileError, match=r"claims shape \(1000000000000,\)"):
        read_npz(buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(ArrayFileError, match="is not an .npy array"):
        read_npz(buf.getvalue())
