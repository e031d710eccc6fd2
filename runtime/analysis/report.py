"""The report of ``agora analyze``: formatted figures, plots of runs side by side and a
self-contained HTML page (images inlined as base64 PNGs, no network access needed to view it)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from runtime.analysis.runs import compare, role_rows


def fmt(v: Any) -> str:
    """A number for a table cell."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:,.4g}"
    return str(v)


# ------------------------------------------------------------------ the HTML report


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(analyses: list[dict[str, Any]], names: list[str]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each plot, every run drawn on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def panel(title: str, ylabel: str, draw: Any) -> tuple[str, str]:
        fig, ax = plt.subplots(figsize=(7, 3))
        for a, name in zip(analyses, names, strict=True):
            draw(ax, a["series"], name)
        ax.set_title(title)
        ax.set_xlabel("tick")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(analyses) > 1 or ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        return title, _png(fig)

    out = []
    if all("gini" in a["series"] for a in analyses):
        out.append(
            panel(
                "Wealth inequality",
                "Gini / top-1% share",
                lambda ax, s, n: (
                    ax.plot(s["wealth_tick"], s["gini"], label=f"Gini {n}"),
                    ax.plot(s["wealth_tick"], s["top1_share"], ls="--", label=f"top 1% {n}"),
                ),
            )
        )
    out.append(
        panel(
            "Mean task price",
            "credits per unit",
            lambda ax, s, n: ax.plot(s["tick"], s["mean_price_credits"], label=n),
        )
    )
    out.append(
        panel(
            "Volume",
            "credits per tick",
            lambda ax, s, n: ax.plot(s["tick"], s["volume_credits"], label=n, lw=0.8),
        )
    )
    if all("replica_lag_max" in a["series"] for a in analyses):
        out.append(
            panel(
                "Ledger convergence: oldest op a replica still lacks",
                "ticks",
                lambda ax, s, n: ax.step(s["tick"], s["replica_lag_max"], where="post", label=n),
            )
        )
    if all("r_global" in a["series"] for a in analyses):
        out.append(
            panel(
                "Synchronisation and tension",
                "r / tension",
                lambda ax, s, n: (
                    ax.plot(s["tick"], s["r_global"], label=f"order parameter r {n}"),
                    ax.plot(s["tension_tick"], s["tension"], "o-", ms=3, label=f"tension {n}"),
                ),
            )
        )
    if any(a["series"]["heal_tick"] for a in analyses):
        out.append(
            panel(
                "Healer actions",
                "workers restarted",
                lambda ax, s, n: (
                    ax.bar(
                        s["heal_tick"], s["heal_true"], label=f"degraded or down {n}", alpha=0.7
                    ),
                    ax.bar(
                        s["heal_tick"],
                        s["heal_false"],
                        bottom=s["heal_true"],
                        label=f"healthy (false alarm) {n}",
                        alpha=0.7,
                    ),
                ),
            )
        )
    return out


def parting_plot(analyses: list[dict[str, Any]], split: dict[str, Any]) -> tuple[str, str]:
    """(title, base64 PNG): a fork's mean price and volume against its parent's, from the fork on,
    with the fork's tick and the tick they part marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_run = {a["run"]: a["series"] for a in analyses}
    parent, child = by_run[split["parent"]], by_run[split["fork"]]
    fig, axes = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    for ax, key, label in (
        (axes[0], "mean_price_credits", "mean price (credits)"),
        (axes[1], "volume_credits", "volume (credits)"),
    ):
        ticks = np.asarray(parent["tick"])
        keep = ticks >= split["fork_tick"] - 5
        ax.plot(ticks[keep], np.asarray(parent[key])[keep], label="parent", lw=1)
        ax.plot(child["tick"], child[key], label="fork", lw=1)
        ax.axvline(split["fork_tick"], color="k", ls=":", lw=0.8)
        if split["parts_at"] is not None:
            ax.axvline(split["parts_at"], color="r", ls="--", lw=0.8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("tick")
    parts = f"part at tick {split['parts_at']}" if split["parts_at"] is not None else "do not part"
    changes = ", ".join(split["sets"]) or "no changes"
    title = f"Fork at tick {split['fork_tick']} ({changes}): they {parts}"
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    return title, _png(fig)


def report_html(analyses: list[dict[str, Any]], splits: list[dict[str, Any]] | None = None) -> str:
    """One self-contained HTML page: tables and plots inline (no network needed to view it)."""
    names = [Path(a["run"]).name or a["run"] for a in analyses]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Agora report: {esc(', '.join(names))}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em "
        ".6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}"
        "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}.note{color:#666;font-size:.9em}"
        "</style></head><body>",
        f"<h1>Agora report: {esc(', '.join(names))}</h1>",
    ]
    for a, n in zip(analyses, names, strict=True):
        parts.append(
            f"<p class='note'>{esc(n)}: scenario {esc(str(a['scenario']))}, seed {a['seed']}, "
            f"{a['ticks']} ticks, "
            f"{a['agents']:,} agents, final state {esc(str(a['final_state_hash'])[:16])}</p>"
        )
    parts.append(
        "<h2>Indicators</h2><table><tr><th>indicator</th>"
        + "".join(f"<th>{esc(n)}</th>" for n in names)
    )
    if len(analyses) > 1:
        parts.append("<th>mean [95% CI]</th>")
    parts.append("</tr>")
    cmp_ = compare(analyses)
    for row in cmp_["rows"]:
        cells = "".join(f"<td>{esc(fmt(v))}</td>" for v in row["values"])
        ci = (
            f"<td>{esc(fmt(row['mean']))} [{esc(fmt(row['ci95'][0]))}, "
            f"{esc(fmt(row['ci95'][1]))}]</td>"
            if len(analyses) > 1
            else ""
        )
        parts.append(f"<tr><td>{esc(row['indicator'])}</td>{cells}{ci}</tr>")
    parts.append("</table>")
    parts.append("<h2>Series</h2>")
    figures = [parting_plot(analyses, split) for split in splits or []] + plots(analyses, names)
    for title, png in figures:
        parts.append(
            f"<figure><img class='plot' alt='{esc(title)}' src='data:image/png;base64,{png}'>"
            f"<figcaption class='note'>{esc(title)}</figcaption></figure>"
        )
    for a, n in zip(analyses, names, strict=True):
        rows = role_rows(a)
        if rows:
            parts.append(
                "<h2>Roles: "
                f"{esc(n)}</h2><table><tr><th>population</th><th>metric</th><th>learned</th><th>baseline</th></tr>"
            )
            parts += [
                f"<tr><td>{esc(p)}</td><td>{esc(k)}</td><td>{esc(fmt(v))}</td><td>{esc(fmt(b))}</td></tr>"
                for p, k, v, b in rows
            ]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ------------------------------------------------------------------ sweeps
