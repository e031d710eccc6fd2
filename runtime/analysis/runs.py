"""``agora analyze``: a run's indicators, runs side by side, sweeps by parameter value (the plots
and the HTML report are in :mod:`runtime.analysis.report`).

Everything is computed from the run directory: the state deltas for wealth (streamed tick by tick,
so memory stays at a few arrays of the number of accounts whatever the run's length), the metrics
table for prices, volume, replica agreement and synchronisation, the event log (streamed) for
slashes, tension and healing actions, and ``summary.json`` for the roles' own scores. A run made
with ``--compare-baseline`` has its baseline beside it in ``DIR/baseline``; its role metrics are
paired with the learned ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from economy.rates import MICRO
from runtime.analysis.indicators import (
    divergence_spells,
    gini,
    mean_ci,
    series_summary,
    top_share,
    volatility,
)
from runtime.record.run_data import RunData

MAX_WEALTH_POINTS = 400  # wealth inequality is computed on at most this many ticks (evenly spaced)


def analyze(run: RunData) -> dict[str, Any]:
    """Every indicator of one run, as plain numbers and series (JSON-ready). Money is in credits,
    and its keys say so (``mean_price_credits``, ``volume_credits``, ``slashed_credits``)."""
    s = run.summary
    totals = s.get("totals", {})
    m = run.metrics()
    tick = m.column("tick").to_numpy()
    out: dict[str, Any] = {
        "run": str(run.dir),
        "scenario": s.get("scenario"),
        "seed": s.get("seed"),
        "ticks": run.ticks,
        "agents": run.n_agents,
        "final_state_hash": s.get("final_state_hash"),
    }
    series: dict[str, list[int] | list[float]] = {"tick": tick.tolist()}
    # Wealth: balance + stake of every agent (the treasury excluded), rebuilt from the state deltas.
    if run.has_state:
        w_ticks, g, top = wealth_inequality(run)
        out["wealth"] = {
            "gini": series_summary(g),
            "top1_share": series_summary(top),
            "ticks_measured": len(w_ticks),
        }
        series.update({"wealth_tick": w_ticks, "gini": g, "top1_share": top})
    else:
        out["wealth"] = None
    price = m.column("mean_price_micro").to_numpy().astype(np.float64) / MICRO
    volume = np.zeros(tick.size)
    if "volume_micro" in m.column_names:  # a run without workers has no volume
        volume = m.column("volume_micro").to_numpy().astype(np.float64) / MICRO
    out["mean_price_credits"] = {
        **series_summary(price),
        "volatility": volatility(price[price > 0]),
    }
    out["volume_credits"] = {**series_summary(volume), "total": float(volume.sum())}
    series.update({"mean_price_credits": price.tolist(), "volume_credits": volume.tolist()})
    distinct = m.column("distinct_roots").to_numpy()
    spells = divergence_spells(distinct)
    conv: dict[str, Any] = {
        "ticks_diverged": int((distinct > 1).sum()),
        "spells_diverged": len(spells),
        "longest_spell": int(max(spells)) if spells else 0,
    }
    if "replica_lag_max" in m.column_names:
        lag = m.column("replica_lag_max").to_numpy()
        conv.update(
            {
                "lag_max": int(lag.max()),
                "lag_mean": float(lag.mean()),
                "lag_p95": float(np.percentile(lag, 95)),
            }
        )
        series["replica_lag_max"] = lag.tolist()
    out["ledger_convergence"] = conv
    series["distinct_roots"] = distinct.tolist()
    if "r_global" in m.column_names:
        r = m.column("r_global").to_numpy()
        out["order_parameter"] = series_summary(r)
        series["r_global"] = r.tolist()
    ev = event_indicators(run)
    out["slashes"] = ev["slashes"]
    if s.get("engine") == "gpu" and "caught" in m.column_names:
        # The gpu engine counts its slashes per tick in the metrics, not as events.
        caught = int(m.column("caught").to_numpy().sum())
        out["slashes"] = {
            "count": int(m.column("slashes").to_numpy().sum()),
            "slashed_credits": int(m.column("slashed_micro").to_numpy().sum()) / MICRO,
            "rejections": caught,
            "false_rejections": 0,  # its critics reject only results that cheated
            "false_rejection_rate": 0.0 if caught else None,
        }
    out["tension"] = ev["tension"]
    series.update(ev["series"])
    health = totals.get("health", {})
    out["healing"] = {
        k: health.get(k)
        for k in (
            "episodes",
            "detections",
            "precision",
            "recall",
            "mean_time_to_repair",
            "credits_lost_micro",
        )
    }
    out["healing"]["precision_from_log"] = ev["precision_from_log"]
    roles = totals.get("roles", {})
    out["roles"] = roles
    out["market_efficiency"] = next(
        (v.get("efficiency") for v in roles.values() if "efficiency" in v), None
    )
    out["forecast_error"] = next(
        (
            {k: v for k, v in r_.items() if k.startswith("mape_")}
            for r_ in roles.values()
            if any(k.startswith("mape_") for k in r_)
        ),
        None,
    )
    base = run.dir / "baseline"
    if (base / "summary.json").is_file():
        out["baseline"] = _baseline(base / "summary.json")
    out["series"] = series
    return out


def _baseline(path: Path) -> dict[str, Any]:
    """The baseline run's role metrics and healing figures (RunDirError when its summary is
    damaged)."""
    from runtime.record.recording import RunDirError

    try:
        summary = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise RunDirError(f"{path}: does not parse ({str(exc).splitlines()[0]})") from None
    totals = summary.get("totals") if isinstance(summary, dict) else None
    if not isinstance(totals, dict) or not isinstance(totals.get("roles", {}), dict):
        raise RunDirError(f"{path}: not a run summary (no totals); the baseline run is damaged")
    return {"roles": totals.get("roles", {}), "health": totals.get("health", {})}


def wealth_inequality(run: RunData) -> tuple[list[int], list[float], list[float]]:
    """Gini and top-1% share of agents' wealth (balance + stake) after each measured tick."""
    n = run.n_agents
    every = max(1, math.ceil(run.ticks / MAX_WEALTH_POINTS))
    wealth: np.ndarray | None = None
    ticks, g, top = [], [], []
    t = -1
    for (
        batch
    ) in run.state_batches():  # one batch per tick; an empty one is a tick where nothing changed
        t = int(batch.column(0)[0].as_py()) if batch.num_rows else t + 1
        if batch.num_rows:
            rows = batch.column(1).to_numpy()
            value = (
                batch.column("balance_micro").to_numpy() + batch.column("stake_micro").to_numpy()
            )
            if wealth is None:
                wealth = np.zeros(max(n + 1, int(rows.max()) + 1), dtype=np.int64)
            wealth[rows] = value
        if wealth is not None and (t % every == 0 or t == run.ticks - 1):
            ticks.append(t)
            g.append(gini(wealth[:n]))
            top.append(top_share(wealth[:n], 0.01))
    return ticks, g, top


def event_indicators(run: RunData) -> dict[str, Any]:
    """Slashes, tension readings and healer actions, streamed from the event log."""
    slash_n = slash_micro = 0
    rejected = false_rejected = 0
    q_true = q_all = 0
    tension_t, tension_v = [], []
    per_tick_q: dict[int, list[int]] = {}
    for batch in run.event_batches():
        if batch.num_rows == 0:
            continue
        kind = np.asarray(batch.column("kind").to_pylist(), dtype=object)
        value = batch.column("value").to_numpy()
        amount = batch.column("amount_micro").to_numpy()
        t = int(batch.column("tick")[0].as_py())
        sl = kind == "slashed"
        slash_n += int(sl.sum())
        slash_micro += int(amount[sl].sum())
        rj = kind == "result_rejected"
        rejected += int(rj.sum())
        false_rejected += int((value[rj] == 0).sum())
        q = kind == "quarantined"
        if q.any():
            q_all += int(q.sum())
            q_true += int((value[q] == 1).sum())
            per_tick_q[t] = [int((value[q] == 1).sum()), int((value[q] == 0).sum())]
        te = kind == "tension"
        if te.any():
            tension_t.append(t)
            tension_v.append(float(value[te][-1]))
    return {
        "slashes": {
            "count": slash_n,
            "slashed_credits": slash_micro / MICRO,
            "rejections": rejected,
            "false_rejections": false_rejected,
            "false_rejection_rate": false_rejected / rejected if rejected else None,
        },
        "tension": {"readings": len(tension_v), **(series_summary(tension_v) if tension_v else {})},
        "precision_from_log": q_true / q_all if q_all else None,
        "series": {
            "tension_tick": tension_t,
            "tension": tension_v,
            "heal_tick": sorted(per_tick_q),
            "heal_true": [per_tick_q[k][0] for k in sorted(per_tick_q)],
            "heal_false": [per_tick_q[k][1] for k in sorted(per_tick_q)],
        },
    }


# ------------------------------------------------------------------ tables

SCALARS = (
    ("wealth Gini, last tick", lambda a: _get(a, "wealth", "gini", "last")),
    ("wealth Gini, mean", lambda a: _get(a, "wealth", "gini", "mean")),
    ("top-1% wealth share, last tick", lambda a: _get(a, "wealth", "top1_share", "last")),
    ("mean price (credits), mean", lambda a: _get(a, "mean_price_credits", "mean")),
    ("price volatility (sd of log returns)", lambda a: _get(a, "mean_price_credits", "volatility")),
    ("volume per tick (credits), mean", lambda a: _get(a, "volume_credits", "mean")),
    ("market efficiency (negotiators)", lambda a: a.get("market_efficiency")),
    ("slashes", lambda a: _get(a, "slashes", "count")),
    ("credits slashed", lambda a: _get(a, "slashes", "slashed_credits")),
    ("false rejections (slashed honest work)", lambda a: _get(a, "slashes", "false_rejections")),
    ("ledger: replica lag, mean (ticks)", lambda a: _get(a, "ledger_convergence", "lag_mean")),
    ("ledger: replica lag, max (ticks)", lambda a: _get(a, "ledger_convergence", "lag_max")),
    ("ledger: ticks replicas disagreed", lambda a: _get(a, "ledger_convergence", "ticks_diverged")),
    ("order parameter r, mean", lambda a: _get(a, "order_parameter", "mean")),
    ("tension, mean", lambda a: _get(a, "tension", "mean")),
    ("healing precision", lambda a: _get(a, "healing", "precision")),
    ("healing recall", lambda a: _get(a, "healing", "recall")),
    ("mean time to repair (ticks)", lambda a: _get(a, "healing", "mean_time_to_repair")),
    ("forecast MAPE, 1 tick", lambda a: (a.get("forecast_error") or {}).get("mape_1")),
)


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def scalar_rows(a: dict[str, Any]) -> list[tuple[str, float | None]]:
    """The headline indicators of one analysis, in a fixed order."""
    return [(label, f(a)) for label, f in SCALARS]


def role_rows(a: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(population, metric, learned, baseline) for each numeric role metric (baseline when
    recorded)."""
    base = (a.get("baseline") or {}).get("roles", {})
    rows = []
    for name, metrics in sorted(a.get("roles", {}).items()):
        for key, value in sorted(metrics.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append((name, key, value, base.get(name, {}).get(key)))
    return rows


def compare(analyses: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs side by side: each indicator per run, its difference from the first run, and across the
    runs the mean with a 95% Student-t confidence interval (meaningful for seeds of one
    scenario)."""
    rows = []
    for label, f in SCALARS:
        values = [f(a) for a in analyses]
        nums = [float(v) for v in values if isinstance(v, (int, float))]
        mean, lo, hi = mean_ci(nums) if nums else (None, None, None)
        first = values[0]
        diffs = [
            (v - first) if isinstance(v, (int, float)) and isinstance(first, (int, float)) else None
            for v in values
        ]
        rows.append(
            {
                "indicator": label,
                "values": values,
                "diff_from_first": diffs,
                "mean": mean,
                "ci95": [lo, hi],
            }
        )
    same = len({a.get("scenario") for a in analyses}) == 1 and len(
        {a.get("seed") for a in analyses}
    ) == len(analyses)
    return {
        "runs": [a["run"] for a in analyses],
        "seeds": [a.get("seed") for a in analyses],
        "same_scenario_different_seeds": same,
        "rows": rows,
    }


def parting(parent: RunData, child: RunData) -> dict[str, Any] | None:
    """Where a fork and its parent part: the fork's tick, the first later tick whose metrics differ
    and the columns that differ first (None when ``child`` is not a fork of ``parent``)."""
    link = child.summary.get("parent")
    if not isinstance(link, dict) or Path(str(link.get("run"))).resolve() != parent.dir.resolve():
        return None
    fork_tick = int(link["tick"])
    a, b = parent.metrics(), child.metrics()
    ta, tb = a.column("tick").to_numpy(), b.column("tick").to_numpy()
    common = [c for c in b.column_names if c in a.column_names and c not in ("tick", "time")]
    first, columns = None, []
    for row_b, tick in enumerate(tb.tolist()):
        rows_a = np.flatnonzero(ta == tick)
        if rows_a.size == 0:
            break
        differ = [
            c for c in common if a.column(c)[int(rows_a[0])].as_py() != b.column(c)[row_b].as_py()
        ]
        if differ:
            first, columns = tick, differ
            break
    return {
        "parent": str(parent.dir),
        "fork": str(child.dir),
        "fork_tick": fork_tick,
        "sets": link.get("sets", []),
        "parts_at": first,
        "first_differing": columns,
    }


OUTCOMES = (
    "volume_total_credits",
    "volume_mean_credits",
    "mean_price_credits",
    "price_volatility",
    "gini_last",
    "gini_mean",
    "top1_share_last",
)
"""The economic outcomes a sweep's results.parquet carries per run (besides the roles' metrics and
the wealth of each population, ``wealth_credits.<population>``)."""


def outcomes(run: RunData) -> dict[str, Any]:
    """One run's economic outcomes as flat figures, in credits (see :data:`OUTCOMES`)."""
    a = analyze(run)
    row: dict[str, Any] = {
        "volume_total_credits": _get(a, "volume_credits", "total"),
        "volume_mean_credits": _get(a, "volume_credits", "mean"),
        "mean_price_credits": _get(a, "mean_price_credits", "mean"),
        "price_volatility": _get(a, "mean_price_credits", "volatility"),
        "gini_last": _get(a, "wealth", "gini", "last"),
        "gini_mean": _get(a, "wealth", "gini", "mean"),
        "top1_share_last": _get(a, "wealth", "top1_share", "last"),
    }
    if run.has_state:
        table, _ = run.state_at(run.ticks - 1)
        wealth = np.asarray(table.column("balance_micro")) + np.asarray(table.column("stake_micro"))
        groups = np.asarray(table.column("population").to_pylist(), dtype=object)
        for name in dict.fromkeys(groups.tolist()):
            row[f"wealth_credits.{name}"] = float(wealth[groups == name].sum()) / MICRO
    return row


def sweep_summary(results: Any) -> dict[str, Any]:
    """A sweep's outcomes by parameter value: for each combination of swept values, the number of
    seeds and, per indicator, the mean with a 95% Student-t interval across those seeds -- never
    across combinations (each is its own treatment). ``results``: the results.parquet table."""
    rows = results.to_pylist()
    keys = [c for c in results.column_names if c.startswith("set.")]
    figures = [
        c
        for c in results.column_names
        if c in OUTCOMES or c.startswith(("roles.", "wealth_credits."))
    ]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "ok":
            groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    out = []
    for values, members in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]]):
        stats = {}
        for name in figures:
            nums = [float(r[name]) for r in members if isinstance(r.get(name), (int, float))]
            if nums:
                mean, lo, hi = mean_ci(nums)
                stats[name] = {"mean": mean, "ci95": [lo, hi], "n": len(nums)}
        label = ", ".join(
            f"{k.removeprefix('set.').split('.')[-1]}={v}"
            for k, v in zip(keys, values, strict=True)
        )
        out.append(
            {
                "values": dict(zip(keys, values, strict=True)),
                "label": label or "(no swept values)",
                "seeds": len(members),
                "figures": stats,
            }
        )
    return {
        "keys": keys,
        "figures": figures,
        "groups": out,
        "failed": sum(1 for r in rows if r.get("status") != "ok"),
    }
