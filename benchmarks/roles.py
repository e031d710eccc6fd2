"""Each role's learned core beside its baseline on held-out seeds (the default scenario's seed is
42;
these are 101..105): healing (learned detector vs no healing), critic (Thompson-sampled checks vs
random spot checks at the same budget), world model (MLP ensemble vs persistence forecast, and the
net value of its forecasts to the requesters who buy them),
refactor (Q-learning vs random changes) and negotiator (policy network + MicroLoRA vs ZI-C)."""

from __future__ import annotations

from pathlib import Path

from runtime.kernel.scenario import load
from runtime.kernel.world import World
from runtime.record.recording import with_baseline_cores

SEEDS = (101, 102, 103, 104, 105)


def run(quick: bool, scenario: Path = Path("scenarios/marketplace.toml")) -> list[tuple[str, ...]]:
    """Rows: (role, seed, metric, learned, baseline), then the mean over seeds."""
    scenario_config, _ = load(scenario)
    until = 120 if quick else None
    rows: list[tuple[str, ...]] = []
    totals: dict[str, list[tuple[float, float]]] = {}
    for seed in SEEDS:
        learned = World(scenario_config, base=scenario.parent, seed=seed)
        learned.run(until)
        baseline = World(with_baseline_cores(scenario_config), base=scenario.parent, seed=seed)
        baseline.run(until)
        h, b = learned.health.summary(), baseline.health.summary()
        pairs = [
            ("healing", "precision", h["precision"], b["precision"]),
            ("healing", "recall", h["recall"], b["recall"]),
            ("healing", "mean time to repair", h["mean_time_to_repair"], b["mean_time_to_repair"]),
            (
                "healing",
                "credits lost",
                h["credits_lost_micro"] / 1e6,
                b["credits_lost_micro"] / 1e6,
            ),
        ]
        for pop_l, pop_b in zip(learned.populations, baseline.populations, strict=True):
            ml, mb = pop_l.role_metrics(), pop_b.role_metrics()
            if "catch_rate" in ml:
                pairs += [
                    (pop_l.name, "catch rate", ml["catch_rate"], mb["catch_rate"]),
                    (
                        pop_l.name,
                        "false-slash rate",
                        ml["false_slash_rate"],
                        mb["false_slash_rate"],
                    ),
                ]
            if "efficiency" in ml:
                pairs += [
                    (pop_l.name, "allocative efficiency", ml["efficiency"], mb["efficiency"]),
                    (
                        pop_l.name,
                        "profit per agent (credits)",
                        ml["profit_per_agent_credits"],
                        mb["profit_per_agent_credits"],
                    ),
                ]
            if "quality_per_credit" in ml:
                pairs.append(
                    (
                        pop_l.name,
                        "quality per 1,000 credits",
                        ml["quality_per_credit"] * 1000,
                        (mb["quality_per_credit"] or 0) * 1000,
                    )
                )
            if "net_value_micro" in ml:
                pairs.append(
                    (
                        pop_l.name,
                        "forecast buyers' net value (credits)",
                        ml["net_value_micro"] / 1e6,
                        mb["net_value_micro"] / 1e6,
                    )
                )
            for key in sorted(k for k in ml if k.startswith("mape_")):
                pairs.append(
                    (pop_l.name, key.replace("mape_", "MAPE at ") + " ticks", ml[key], mb[key])
                )
                # The same comparison on the learned run's own prices (its sales move the market).
                pairs.append(
                    (
                        pop_l.name,
                        key.replace("mape_", "MAPE at ") + " ticks, same prices",
                        ml[key],
                        ml[f"persistence_{key}"],
                    )
                )
        for role, label, lv, bv in pairs:
            rows.append((role, str(seed), label, f"{lv or 0:,.3f}", f"{bv or 0:,.3f}"))
            totals.setdefault((role, label), []).append((lv or 0.0, bv or 0.0))
    for (role, label), values in totals.items():
        lm = sum(v[0] for v in values) / len(values)
        bm = sum(v[1] for v in values) / len(values)
        rows.append((role, "mean", label, f"{lm:,.3f}", f"{bm:,.3f}"))
    return rows
