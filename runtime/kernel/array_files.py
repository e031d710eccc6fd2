"""Array files (.npz) that are the same bytes for the same arrays, and read back without trust.

``numpy.savez`` stamps each member of its zip with the wall-clock time, so one run writes other
bytes than its replay. :func:`npz_bytes` writes the members in the given order with a fixed
timestamp and no compression. :func:`read_npz` takes a file from anywhere (a core file a scenario
names, a checkpoint): it refuses what is not a zip of ``.npy`` members, object or string arrays
(no pickles), and headers whose shape claims more data than the member holds, each with an
:class:`ArrayFileError` naming the file and the member.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no clock in the bytes
MAX_MEMBERS = 100_000
MAX_MEMBER_BYTES = 1 << 36  # 64 GiB: past it a member is refused before it is read


class ArrayFileError(ValueError):
    """An array file that cannot be read as one (the message names the file and why)."""


def npz_bytes(arrays: dict[str, npt.NDArray[np.generic]]) -> bytes:
    """The .npz bytes of ``arrays`` (name -> array), members in the dict's order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            arr = np.asarray(value)
            if arr.dtype.hasobject:
                raise ArrayFileError(f"{name}: an object array cannot be written (no pickles)")
            member = io.BytesIO()
            data = arr if arr.flags.c_contiguous else arr.copy(order="C")  # keeps 0-d arrays 0-d
            np.lib.format.write_array(member, data, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def write_npz(path: Path, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
    """Write :func:`npz_bytes` to ``path`` through a temporary name: a file that exists is whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(npz_bytes(arrays))
    tmp.replace(path)


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, strings: bool
) -> npt.NDArray[np.generic]:
    if info.file_size > MAX_MEMBER_BYTES:
        raise ArrayFileError(f"{where}: {info.file_size} bytes, more than {MAX_MEMBER_BYTES}")
    raw = zf.read(info)
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"npy format version {version}")
    except ValueError as exc:
        raise ArrayFileError(f"{where}: not an .npy array ({exc})") from None
    if dtype.hasobject or (dtype.kind in "SUV" and not strings):
        raise ArrayFileError(f"{where}: holds {dtype} values; expected numbers")
    count = 1
    for dim in shape:
        count *= int(dim)
    if count * dtype.itemsize != len(raw) - stream.tell():
        raise ArrayFileError(
            f"{where}: its header claims shape {shape} of {dtype}, "
            f"but the member holds {len(raw) - stream.tell()} bytes of data"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=stream.tell())
    return data.reshape(shape, order="F" if fortran else "C").copy()


def read_npz(source: Path | bytes, *, strings: bool = False) -> dict[str, npt.NDArray[np.generic]]:
    """Every array of an .npz file or its bytes, checked (module docstring); ``strings`` allows
    string arrays (a core file's role name)."""
    where = str(source) if isinstance(source, Path) else "array data"
    try:
        data = source.read_bytes() if isinstance(source, Path) else source
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ArrayFileError(f"{where}: not an .npz file ({exc})") from None
    out: dict[str, npt.NDArray[np.generic]] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArrayFileError(f"{where}: {len(infos)} members, more than {MAX_MEMBERS}")
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ArrayFileError(f"{where}: member {info.filename!r} is not an .npy array")
            try:
                out[info.filename[:-4]] = _read_member(
                    zf, info, f"{where}: {info.filename}", strings
                )
            except (zipfile.BadZipFile, EOFError, OSError) as exc:  # a damaged member (CRC, short)
                raise ArrayFileError(f"{where}: {info.filename}: damaged ({exc})") from None
    return out
