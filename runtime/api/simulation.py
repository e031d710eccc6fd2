"""A world to drive from Python: build it from a file, a TOML string or a dict, step it, read it.

This is the Mesa habit with Agora's arrays::

    import agora

    sim = agora.Simulation.from_file("scenarios/marketplace.toml")
    sim.run(50)
    sim.population("workers")   # a polars DataFrame, one row per agent
    sim.balances()              # every account's balance and stake at its home replica
    sim.metrics()               # one row per tick so far

With ``out=DIR`` the run is recorded exactly as ``agora run`` records it -- the same bytes for the
same seed, once it has run to its last tick (or the ``until`` it was built with) and is closed.
Credits show in credits, with the unit in the column name (``balance_credits``); the exact integers
stay beside them (``balance_micro``). ``docs/reference/run-files.md`` describes every column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from economy import MICRO
from runtime.kernel.errors import ScenarioError
from runtime.kernel.scenario import Scenario, parse


class Simulation:
    """One world, driven tick by tick from Python (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        raw: bytes,
        base: Path = Path("."),
        *,
        seed: int | None = None,
        out: Path | str | None = None,
        until: int | None = None,
        overwrite: bool = False,
    ) -> None:
        from runtime.record import recording

        self.scenario = scenario
        self.base = Path(base)
        self.seed = scenario.world.seed if seed is None else int(seed)
        self.until = scenario.world.ticks if until is None else int(until)
        if not 1 <= self.until <= 10_000_000:
            raise ScenarioError([f"until: must be 1 to 10,000,000 ticks, got {self.until}"])
        self.out = None if out is None else Path(out)
        self._raw = raw
        self._closed = False
        self.summary: dict[str, Any] | None = None
        self._manifest = {
            "format": recording.FORMAT,
            "seed": self.seed,
            "ticks": self.until,
            "device": "cpu",
            "realtime_factor": None,
            "cores": "as written",
            "parent": None,
            "signed": None,
        }
        if self.out is not None:
            recording.prepare_out(self.out, overwrite, keep=(self.base,))
            (self.out / recording.SCENARIO_COPY).write_bytes(raw)
            recording._copy_references(scenario, self.base, self.out)
            recording.write_manifest(self.out, self._manifest)
        self.world = recording.build(scenario, self.base, self.out, self.seed, self.until)
        self.world.metrics_history = []

    # ------------------------------------------------------------------ building
    @classmethod
    def from_file(cls, path: Path | str, **kwargs: Any) -> Simulation:
        """A simulation of the scenario file at ``path`` (files it names are relative to its
        folder)."""
        from runtime.kernel.scenario import load

        path = Path(path)
        scenario, raw = load(path)
        return cls(scenario, raw, path.parent, **kwargs)

    @classmethod
    def from_toml(cls, text: str, base: Path | str = ".", **kwargs: Any) -> Simulation:
        """A simulation of scenario TOML ``text`` (files it names are relative to ``base``)."""
        return cls(parse(text, "<toml>", Path(base)), text.encode(), Path(base), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path | str = ".", **kwargs: Any) -> Simulation:
        """A simulation of a scenario given as a dict (the TOML file's tables and keys)."""
        import tomli_w

        try:
            text = tomli_w.dumps(data)
        except (TypeError, ValueError) as exc:
            raise ScenarioError(
                [f"<dict>: (toml): cannot be written as a scenario file: {exc}"]
            ) from None
        return cls.from_toml(text, base, **kwargs)

    # ------------------------------------------------------------------ the clock
    @property
    def tick(self) -> int:
        """The next tick to run (ticks 0 .. tick − 1 have run)."""
        return self.world.tick

    def step(self) -> None:
        """Run one tick."""
        self.run(self.tick + 1)

    def run(self, until: int | None = None) -> None:
        """Run ticks up to ``until`` (exclusive; default: the simulation's last tick)."""
        until = self.until if until is None else int(until)
        if self._closed:
            raise RuntimeError("the simulation is closed")
        if not self.tick <= until <= self.until:
            raise ValueError(
                f"until: {until} is outside this simulation's ticks {self.tick}..{self.until}"
            )
        if until > self.tick:
            self.world.run(until)

    def close(self) -> dict[str, Any] | None:
        """Finish: settle the ledger replicas and, when recording, write the summary as ``agora
        run``
        does; return it (None without ``out``)."""
        if self._closed:
            return self.summary
        from runtime.record import recording

        self._closed = True
        self.world.settled = self.world.settle()
        self.world.close()
        if self.out is not None:
            self.summary = recording.summarize(self.world, self.out, self._raw, self._manifest, 0.0)
        return self.summary

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def population(self, name: str) -> Any:
        """Population ``name`` as a polars DataFrame, one row per agent: its account, money (credits
        and exact micro-credits, at its home replica), reputation, health, and every per-agent array
        of its role's state (those that hold money, :attr:`Population.money_arrays`, as
        ``<name>_credits`` and, when exact, ``<name>_micro``)."""
        import polars as pl

        pop = next((p for p in self.world.populations if p.name == name), None)
        if pop is None:
            names = [p.name for p in self.world.populations]
            raise KeyError(f"no population {name!r}; populations are {names}")
        table = self._accounts(pop.ids)
        table.update({"alive": pop.alive, "degraded": pop.degraded, "quarantined": pop.quarantined})
        for key, value in sorted(pop.state_arrays().items()):
            arr = np.asarray(value)
            if arr.ndim != 1 or arr.shape[0] != pop.n:
                continue
            unit = pop.money_arrays.get(key)
            columns = (
                {f"{key}_credits": arr / MICRO, f"{key}_micro": arr}
                if unit == "micro"
                else {f"{key}_credits": arr}
                if unit == "credits"
                else {key: arr}
            )
            for column, values in columns.items():
                table.setdefault(column, values)
        return pl.DataFrame(table)

    def balances(self, replica: int | None = None) -> Any:
        """Every account's balance and stake as a polars DataFrame: at its home replica, or as
        ``replica`` sees them (replicas may disagree until they converge)."""
        import polars as pl

        accounts = np.arange(self.world.n_accounts, dtype=np.int64)
        table = self._accounts(accounts, replica)
        names = np.full(accounts.size, "treasury", dtype=object)
        for pop in self.world.populations:
            names[pop.ids] = pop.name
        table["population"] = names.tolist()
        return pl.DataFrame(table)

    def metrics(self) -> Any:
        """The metrics of every tick run so far, as a polars DataFrame: the columns of
        ``metrics.arrows`` (money in exact micro-credits, ``<name>_micro``), each money column
        followed by ``<name>_credits``, the same figure in credits (a float)."""
        import polars as pl

        rows = self.world.metrics_history or []
        if not rows:
            return pl.DataFrame()
        frame = pl.DataFrame(rows)
        columns: list[Any] = []
        for name in frame.columns:
            columns.append(frame[name])
            if name.endswith("_micro"):  # divided by numpy: the same floats as balance_credits
                credits = np.asarray(frame[name].to_numpy(), dtype=np.float64) / MICRO
                columns.append(pl.Series(name.removesuffix("_micro") + "_credits", credits))
        return pl.DataFrame(columns)

    def _accounts(self, accounts: np.ndarray, replica: int | None = None) -> dict[str, Any]:
        world = self.world
        if replica is None:
            balance = np.zeros(accounts.size, dtype=np.int64)
            stake = np.zeros(accounts.size, dtype=np.int64)
            homes = world.home(accounts)
            for r, ledger in enumerate(world.ledgers):
                sel = homes == r
                if sel.any() and ledger is not None:
                    balance[sel] = ledger.balances()[accounts[sel]]
                    stake[sel] = ledger.staked_of(accounts[sel])
        else:
            if not 0 <= replica < len(world.ledgers) or world.ledgers[replica] is None:
                raise ValueError(
                    f"replica: {replica} is not one of this world's 0..{len(world.ledgers) - 1}"
                )
            balance = world.ledgers[replica].balances()[accounts]
            stake = world.ledgers[replica].staked_of(accounts)
        rep = world.reputation
        return {
            "account": accounts,
            "region": np.asarray(world.home(accounts)),
            "balance_credits": balance / MICRO,
            "balance_micro": balance,
            "stake_credits": stake / MICRO,
            "stake_micro": stake,
            "reputation": rep.alpha[accounts] / (rep.alpha[accounts] + rep.beta[accounts]),
        }
