"""The world's task board: tasks posted this tick, held as arrays until a worker population takes
them."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt


class TaskBoard:
    """Open tasks: requester account, skill, units, price (micro-credits), id; cleared every
    tick."""

    def __init__(self) -> None:
        self.next_id = 0
        self.clear()

    def clear(self) -> None:
        """Drop every open task (unserved tasks expire at the end of their tick)."""
        self.requester = np.empty(0, np.int64)
        self.skill = np.empty(0, np.int64)
        self.units = np.empty(0, np.int64)
        self.price = np.empty(0, np.int64)
        self.task_id = np.empty(0, np.int64)

    def post(
        self,
        requester: npt.NDArray[np.int64],
        skill: npt.NDArray[np.int64],
        units: npt.NDArray[np.int64],
        price: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        """Add tasks; return their ids."""
        ids = np.arange(self.next_id, self.next_id + len(requester), dtype=np.int64)
        self.next_id += len(requester)
        self.requester = np.concatenate([self.requester, requester])
        self.skill = np.concatenate([self.skill, skill])
        self.units = np.concatenate([self.units, units])
        self.price = np.concatenate([self.price, price])
        self.task_id = np.concatenate([self.task_id, ids])
        return ids

    def take(self, keep: npt.NDArray[np.bool_]) -> None:
        """Keep only the tasks flagged in ``keep`` (the others were taken)."""
        for name in ("requester", "skill", "units", "price", "task_id"):
            setattr(self, name, getattr(self, name)[keep])

    def __len__(self) -> int:
        return int(self.task_id.shape[0])

    def digest(self) -> bytes:
        """Hash of the open tasks and the id counter."""
        h = hashlib.sha256(str(self.next_id).encode())
        for arr in (self.requester, self.skill, self.units, self.price, self.task_id):
            h.update(arr.tobytes())
        return h.digest()
