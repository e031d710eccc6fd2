"""Each role's learned core beside its baseline on held-out seeds (the default scenario's seed is 42;
these are 101..105). So far only the healing role has a core."""

from __future__ import annotations

from pathlib import Path

from runtime.recording import with_baseline_cores
from runtime.scenario import load
from runtime.world import World

SEEDS = (101, 102, 103, 104, 105)


def run(quick: bool, scenario: Path = Path("scenarios/marketplace.toml")) -> list[tuple[str, ...]]:
    """Rows: (seed, metric, learned, baseline) for the healing role, then the mean over seeds."""
    sc, _ = load(scenario)
    until = 120 if quick else None
    rows: list[tuple[str, ...]] = []
    totals: dict[str, list[tuple[float, float]]] = {}
    for seed in SEEDS:
        learned = World(sc, base=scenario.parent, seed=seed)
        learned.run(until)
        baseline = World(with_baseline_cores(sc), base=scenario.parent, seed=seed)
        baseline.run(until)
        h, b = learned.health.summary(), baseline.health.summary()
        for key, scale in (("recall", 1.0), ("mean_time_to_repair", 1.0), ("credits_lost_micro", 1e-6)):
            lv, bv = h[key], b[key]
            label = "credits lost" if key == "credits_lost_micro" else key.replace("_", " ")
            rows.append((str(seed), label, f"{(lv or 0) * scale:,.2f}", f"{(bv or 0) * scale:,.2f}"))
            totals.setdefault(label, []).append(((lv or 0) * scale, (bv or 0) * scale))
        rows.append((str(seed), "precision", "n/a" if h["precision"] is None else f"{h['precision']:.2f}", "n/a"))
    for label, pairs in totals.items():
        lm = sum(p[0] for p in pairs) / len(pairs)
        bm = sum(p[1] for p in pairs) / len(pairs)
        rows.append(("mean", label, f"{lm:,.2f}", f"{bm:,.2f}"))
    return rows
