"""agora run (and --resume), agora fork: record runs, continue them, branch them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.cli.output import Table, app, err, fail, out, progress, role_failed
from runtime.kernel.errors import RoleFailure, RunDirError, ScenarioError


def _default_out(scenario: Path) -> Path:
    base = Path("runs") / scenario.stem
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


@app.command()
def run(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario TOML file, e.g. scenarios/marketplace.toml.")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory to write (default: runs/<scenario name>[-N])."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, max=2**63 - 1, help="Override the scenario's seed.")
    ] = None,
    until: Annotated[
        int | None,
        typer.Option(min=1, help="Run this many ticks instead of the scenario's world.ticks."),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            help=(
                "Where the roles' networks and the Kuramoto oscillators run: cpu (replays bit for "
                "bit) or cuda (a GPU, when torch sees one; the oscillators give the CPU's bits "
                "there, the networks agree to rounding)."
            )
        ),
    ] = "cpu",
    realtime: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help=(
                "Pace against the wall clock: FACTOR wall seconds per unit of virtual time "
                "(simpy.rt)."
            ),
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out directory.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")
    ] = False,
    compare_baseline: Annotated[
        bool,
        typer.Option(
            "--compare-baseline",
            help=(
                "Also run every role's baseline core (same seed) into OUT/baseline and print each "
                "role's metric beside its baseline's."
            ),
        ),
    ] = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help=(
                "Sign the run with the key in this file (made from the operating system's random "
                "source, mode 0600, if it does not exist): the summary carries an HMAC-SHA256 "
                "under it, and the ledger's keys come from it, not from the public seed. The key "
                "is never written into the run; agora replay --verify --key FILE checks it."
            ),
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help=(
                "Continue the run in this run directory, which did not finish (killed, even by "
                "SIGKILL), from its last saved checkpoint; the finished directory holds the bytes "
                "an uninterrupted run writes."
            ),
        ),
    ] = None,
) -> None:
    """Run a scenario and record it: event log, per-tick metrics and summary.json with state hashes.

    With --resume DIR, continue an unfinished run instead (its scenario, seed and ticks are the
    run's own).
    """
    from runtime.record.recording import record

    secret = _sign_key(sign_key, create=resume is None)
    if resume is not None:
        if (
            scenario is not None
            or out_dir is not None
            or seed is not None
            or until is not None
            or compare_baseline
            or realtime is not None
            or device != "cpu"
        ):
            fail(
                [
                    "--resume DIR takes no scenario, --out, --seed, --until, --device, "
                    "--realtime or "
                    "--compare-baseline: the run's own are used"
                ]
            )
        _resume(resume, quiet, secret)
        return
    if scenario is None:
        fail(["give a scenario file (e.g. agora run scenarios/marketplace.toml), or --resume DIR"])
    assert scenario is not None
    if device not in ("cpu", "cuda"):
        fail([f"--device {device!r}: expected cpu or cuda"])
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail(
                [
                    "--device cuda: torch sees no CUDA GPU on this machine (this install is "
                    "the CPU build); use --device cpu"
                ]
            )
    if realtime is not None and not (0 < realtime < 1e6):
        fail(
            [
                f"--realtime must be a finite number > 0 of wall seconds per unit of virtual "
                f"time, got {realtime}"
            ]
        )
    target = out_dir if out_dir is not None else _default_out(scenario)
    try:
        from runtime.kernel.scenario import load

        parsed, _ = load(scenario)
        if parsed.world.engine == "gpu" and compare_baseline:
            fail(
                [
                    "--compare-baseline: the gpu engine's cores are integer learners with no "
                    "baseline run to compare; run the scenario with each core setting instead"
                ]
            )
        if parsed.distributed is not None and parsed.distributed.shards > 1:
            _run_sharded(
                scenario,
                target,
                seed,
                until,
                overwrite,
                quiet,
                refused=[
                    flag
                    for flag, on in (
                        ("--compare-baseline", compare_baseline),
                        ("--realtime", realtime is not None),
                        ("--device cuda", device == "cuda"),
                    )
                    if on
                ],
            )
            return
        ticks = until if until is not None else parsed.world.ticks
        bar, callback = progress(ticks, quiet, f"{parsed.world.name}")
        if bar is not None:
            with bar:
                summary = record(
                    scenario,
                    target,
                    seed=seed,
                    until=until,
                    realtime=realtime,
                    overwrite=overwrite,
                    progress=callback,
                    device=device,
                    sign_key=secret,
                )
        else:
            summary = record(
                scenario,
                target,
                seed=seed,
                until=until,
                realtime=realtime,
                overwrite=overwrite,
                device=device,
                sign_key=secret,
            )
    except ScenarioError as exc:
        fail(exc.problems)
    except RunDirError as exc:
        fail([str(exc)])
    except RoleFailure as exc:
        role_failed(exc)
    if not quiet:
        _print_summary(summary, target)
    else:
        out.print(str(target), markup=False)
    if compare_baseline:
        base = record(
            scenario,
            target / "baseline",
            seed=seed,
            until=until,
            overwrite=True,
            baseline=True,
            device=device,
        )
        _print_comparison(summary, base)


def _sign_key(path: Path | None, create: bool) -> bytes | None:
    """The signing key in ``path`` (made there when ``create`` and absent), or None without one."""
    from runtime.record.recording import read_key

    if path is None:
        return None
    existed = path.exists()
    try:
        key = read_key(path, create=create)
    except RunDirError as exc:
        fail([str(exc)])
    if not existed:
        err.print(
            f"made a new signing key in {path} (mode 0600); keep it: checking or resuming the "
            f"run needs it",
            markup=False,
        )
    return key


def _resume(run_dir: Path, quiet: bool, key: bytes | None = None) -> None:
    """agora run --resume DIR."""
    from runtime.record.recording import RUN_FILE
    from runtime.record.resume import resume as do_resume

    try:
        manifest = (
            json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
        )
    except (ValueError, OSError):
        manifest = {}
    manifest = manifest if isinstance(manifest, dict) else {}
    if manifest.get("format") == "agora-sharded-run-2":  # runtime.scale.sharded.FORMAT
        _resume_sharded(run_dir, quiet, key)
        return
    ticks = manifest.get("ticks", 0)
    try:
        bar, callback = progress(
            int(ticks) if isinstance(ticks, int) else 0, quiet, f"resume {run_dir.name}"
        )
        if bar is not None:
            with bar:
                summary, start = do_resume(run_dir, callback, key)
        else:
            summary, start = do_resume(run_dir, None, key)
    except ScenarioError as exc:
        fail(exc.problems)
    except RunDirError as exc:
        fail([str(exc)])
    except RoleFailure as exc:
        role_failed(exc)
    if not quiet:
        err.print(
            f"resumed {run_dir} from "
            + (
                f"the checkpoint of tick {start}"
                if start >= 0
                else "tick 0 (no checkpoint had been saved)"
            ),
            markup=False,
        )
        _print_summary(summary, run_dir)
    else:
        out.print(str(run_dir), markup=False)


def _run_sharded(
    scenario: Path,
    target: Path,
    seed: int | None,
    until: int | None,
    overwrite: bool,
    quiet: bool,
    refused: list[str],
) -> None:
    """agora run for a scenario with [distributed] shards > 1: the shards on Ray actors, totals to
    summary.json."""
    if refused:
        fail([f"{refused[0]}: not available for a sharded world (distributed.shards > 1)"])
    _needs_ray()
    from runtime.scale.sharded import ShardDown
    from runtime.scale.sharded_recording import record_sharded

    if not quiet:
        err.print("starting the shards on Ray...", markup=False)
    try:
        s = record_sharded(scenario, target, seed=seed, until=until, overwrite=overwrite)
    except ShardDown as exc:  # not the user's input: the run failed (exit 1)
        fail([str(exc)], code=1)
    _print_sharded(s, target, quiet)


def _needs_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        fail(
            [
                "distributed.shards: a sharded world runs on Ray actors; install the extra: "
                "pip install -e '.[ray]'"
            ]
        )


def _resume_sharded(run_dir: Path, quiet: bool, key: bytes | None) -> None:
    """agora run --resume DIR for a sharded run: from the newest barrier cut, on Ray actors."""
    if key is not None:
        fail([f"{run_dir}: a sharded run is not signed; --key does not apply"])
    _needs_ray()
    from runtime.scale.sharded import ShardDown
    from runtime.scale.sharded_recording import resume_sharded

    try:
        s, start = resume_sharded(run_dir)
    except ShardDown as exc:
        fail([str(exc)], code=1)
    except ScenarioError as exc:
        fail(exc.problems)
    except RunDirError as exc:
        fail([str(exc)])
    if not quiet:
        err.print(
            f"resumed {run_dir} from "
            + (f"the barrier before tick {start}" if start >= 0 else "tick 0 (no usable cut)"),
            markup=False,
        )
    _print_sharded(s, run_dir, quiet)


def _print_sharded(s: dict[str, Any], target: Path, quiet: bool) -> None:
    """A sharded run's summary as a table (with --quiet: its directory)."""
    if quiet:
        out.print(str(target), markup=False)
        return
    table = Table(
        title=f"agora run: {s['scenario']} (seed {s['seed']}), {s['shards']} shards",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    reports = s["shard_reports"]
    rows = [
        ("ticks", f"{s['ticks']} in {s['wall_seconds']:.2f} s"),
        ("agents per shard", ", ".join(f"{r['agents']:,}" for r in reports)),
        ("tasks posted per shard", ", ".join(f"{r['tasks_posted']:,}" for r in reports)),
        (
            "credits held / issued",
            f"{s['credits_held_micro'] / 1e6:,.6f} / {s['supply_issued_micro'] / 1e6:,.6f}"
            + (
                "  (conserved)"
                if s["conserved"]
                else "  (NOT conserved)"
                if s["converged"]
                else "  (replicas not converged, e.g. a partition still in place: no total yet)"
            ),
        ),
        ("lowest balance", f"{s['lowest_balance_micro'] / 1e6:,.6f} credits"),
        (
            "ledger replicas",
            f"converged after {s['settle_rounds']} settling ticks"
            if s["converged"]
            else f"{len(set(s['roots'].values()))} distinct states",
        ),
        (
            "messages",
            ", ".join(
                f"shard {r['shard']}: {r['messages']['sent']:,} sent, "
                f"{r['messages']['lost']:,} lost"
                for r in reports
            ),
        ),
        ("final state", s["final_state_hash"][:32]),
        ("run directory", str(target)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


def _print_comparison(learned: dict[str, Any], base: dict[str, Any]) -> None:
    from runtime.analysis.report import fmt

    table = Table(title="roles: learned cores vs baselines (same seed)")
    for col in ("role", "metric", "learned", "baseline"):
        table.add_column(col)

    h1, h0 = learned["totals"]["health"], base["totals"]["health"]
    if h1["episodes"]:
        for key in (
            "precision",
            "recall",
            "mean_time_to_repair",
            "credits_lost_micro",
            "unrepaired_at_end",
        ):
            table.add_row("healing", key, fmt(h1[key]), fmt(h0[key]))
    for name, metrics in learned["totals"].get("roles", {}).items():
        other = base["totals"].get("roles", {}).get(name, {})
        keys = (
            "efficiency",
            "profit_per_agent_credits",
            "catch_rate",
            "false_slash_rate",
            "checks",
            "caught",
            "invalid",
            "quality_gained",
            "spent_credits",
            "quality_per_credit",
            *sorted(k for k in metrics if k.startswith("mape")),
            "forecasts_sold",
            "forecasts_bought",
            "deferred",
            "net_value_micro",
            "profit_per_core_agent_credits",
            "profit_per_zic_agent_credits",
            "proposals_checked",
            "batches_proved",
            "batches_refused",
            "sent_back",
        )
        for key in keys:
            if key in metrics:
                table.add_row(name, key, fmt(metrics[key]), fmt(other.get(key)))
    out.print(table)


def _settled(totals: dict[str, Any]) -> str:
    """The ledger's end state in words: converged, and after how many settle rounds."""
    settle = totals.get("settle") or {}
    rounds = settle.get("rounds")
    after = (
        ""
        if rounds is None
        else f" after {rounds} settle round{'s' * (rounds != 1)} of anti-entropy"
    )
    if totals["distinct_ledger_roots"] == 1:
        return "converged to one state" + after
    return (
        f"{totals['distinct_ledger_roots']} distinct states{after} "
        "(a partition still in place cannot settle)"
    )


SHOWN_METRICS: dict[str, tuple[str, str]] = {
    "efficiency": ("efficiency", ""),
    "profit_per_agent_credits": ("profit per agent", "credits"),
    "profit_per_core_agent_credits": ("profit per policy agent", "credits"),
    "profit_per_zic_agent_credits": ("profit per ZI-C agent", "credits"),
    "catch_rate": ("catch rate", ""),
    "false_slash_rate": ("false slash rate", ""),
    "mape_1": ("MAPE at 1 tick", ""),
    "mape_5": ("MAPE at 5 ticks", ""),
    "quality_per_credit": ("quality per credit", ""),
    "net_value_micro": ("net value", "micro"),
}
"""The role metrics the run summary shows: label and unit (``micro`` values shown in credits)."""


def _role_line(metrics: dict[str, Any]) -> str:
    """A role's headline metrics in words, money in credits: ``profit per agent 78.3 credits``."""
    parts = []
    for key, (label, unit) in SHOWN_METRICS.items():
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if unit == "micro":
            value, unit = value / 1e6, "credits"
        parts.append(f"{label} {value:.4g}" + (f" {unit}" if unit else ""))
    return ", ".join(parts)


def _print_gpu_summary(s: dict[str, Any], target: Path) -> None:
    t, m = s["totals"], s["totals"]["messages"]
    table = Table(
        title=f"agora run: {s['scenario']} (seed {s['seed']}, gpu engine on {s['device_name']})",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    rate = s["ticks"] / s["wall_seconds"] if s["wall_seconds"] > 0 else float("inf")
    held, issued = t["supply_held_micro"], t["supply_issued_micro"]
    rows = [
        ("ticks", f"{s['ticks']} in {s['wall_seconds']:.2f} s ({rate:,.0f} ticks/s)"),
        ("agents", f"{t['agents']:,}"),
        (
            "tasks",
            f"{t['tasks_posted']:,} posted, {t['contracts']:,} contracted, "
            f"{t['tasks_served']:,} served",
        ),
        ("cheats", f"{t['cheats']:,}, {t['caught']:,} caught"),
        ("mean price", f"{t['mean_price_micro'] / 1e6:.3f} credits"),
        (
            "supply held / issued",
            f"{held / 1e6:,.6f} / {issued / 1e6:,.6f} credits"
            + ("  (conserved)" if held == issued else "  (NOT conserved)"),
        ),
        ("ledger replicas", f"{t['distinct_ledger_roots']} distinct state(s) at the end"),
        ("batches refused", f"{t['ops_refused']:,}"),
        ("sampled proofs", f"{t['proved']:,} payments proved, {t['refuted']:,} refuted"),
        (
            "messages",
            f"{m['sent']:,} batches sent, {m['lost']:,} lost, {m['blocked']:,} blocked, "
            f"{m['duplicated']:,} duplicated",
        ),
        ("final state", s["final_state_hash"][:16]),
        ("run directory", str(target)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


def _print_summary(s: dict[str, Any], target: Path) -> None:
    if s.get("engine") == "gpu":
        _print_gpu_summary(s, target)
        return
    t = s["totals"]
    m = s["totals"]["messages"]
    table = Table(title=f"agora run: {s['scenario']} (seed {s['seed']})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rate = s["ticks"] / s["wall_seconds"] if s["wall_seconds"] > 0 else float("inf")
    rows = [
        ("ticks", f"{s['ticks']} in {s['wall_seconds']:.2f} s ({rate:,.0f} ticks/s)"),
        ("agents", f"{t['agents']:,}"),
        ("tasks posted", f"{t['tasks_posted']:,}"),
        ("mean price", f"{t['mean_price_micro'] / 1e6:.3f} credits"),
        (
            "supply held / issued",
            f"{t['supply_held_micro'] / 1e6:,.6f} / {t['supply_issued_micro'] / 1e6:,.6f} credits"
            + (
                "  (conserved)"
                if t["supply_held_micro"] == t["supply_issued_micro"]
                else "  (NOT conserved)"
            ),
        ),
        ("ledger replicas", _settled(t)),
        ("ops refused", f"{t['ops_refused']:,}"),
        (
            "messages",
            f"{m['sent']:,} sent, {m['lost']:,} lost, {m['blocked']:,} blocked, "
            f"{m['duplicated']:,} duplicated",
        ),
        (
            "reputation accuracy",
            "n/a" if t["reputation_accuracy"] is None else f"{t['reputation_accuracy']:.3f}",
        ),
        ("events", f"{t['events']:,}"),
        *(
            [
                (
                    "healing",
                    f"{h['episodes']} faults, {h['detections']} actions, precision "
                    + ("n/a" if h["precision"] is None else f"{h['precision']:.2f}")
                    + ", recall "
                    + ("n/a" if h["recall"] is None else f"{h['recall']:.2f}")
                    + ", repair "
                    + (
                        "n/a"
                        if h["mean_time_to_repair"] is None
                        else f"{h['mean_time_to_repair']:.1f} ticks"
                    )
                    + f", {h['credits_lost_micro'] / 1e6:,.1f} credits of work lost",
                )
            ]
            if (h := t.get("health")) and h["episodes"]
            else []
        ),
        *(
            [
                (
                    "governance",
                    ", ".join(f"#{p['id']} {p['state']}" for p in t["proposals"])
                    + "  ("
                    + ", ".join(f"{k}={v:g}" for k, v in sorted(t["params"].items()))
                    + ")",
                )
            ]
            if t.get("proposals")
            else []
        ),
        *[(name, _role_line(m)) for name, m in t.get("roles", {}).items()],
        ("final state", s["final_state_hash"][:32]),
        ("run directory", str(target)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    out.print(f"replay it: agora replay {target} --verify", markup=False)


@app.command()
def fork(
    run_dir: Annotated[
        Path, typer.Argument(help="The parent: a run directory with saved checkpoints.")
    ],
    at: Annotated[
        int,
        typer.Option(
            "--at",
            min=0,
            help=(
                "The checkpoint tick to branch from (a tick whose world the parent saved: "
                "checkpoints/world_<tick>.npz)."
            ),
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run directory of the branch (new or empty).")
    ],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=(
                "KEY=VALUE to change from the fork on, with the keys of agora sweep: "
                "economy.price_elasticity=0.3, population.workers.cheat_probability=0.9, "
                "fault.3.at=120. What a world is built from (populations, regions, seed) cannot "
                "change."
            ),
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a non-empty --out that is an Agora run directory.")
    ] = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help=(
                "The key of a signed parent (agora run --sign-key); the branch is signed with it "
                "too."
            ),
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")
    ] = False,
) -> None:
    """Branch a what-if run from a checkpoint of another run, optionally with changed parameters.

    The branch records from the tick after --at on; its summary names its parent (run and tick).
    Compare them with: agora analyze PARENT BRANCH.
    """
    from runtime.record.resume import fork as do_fork

    try:
        summary = do_fork(
            run_dir, at, sets or [], out_dir, overwrite=overwrite, key=_sign_key(sign_key, False)
        )
    except ScenarioError as exc:
        fail(exc.problems)
    except RunDirError as exc:
        fail([str(exc)])
    except RoleFailure as exc:
        role_failed(exc)
    if quiet:
        out.print(str(out_dir), markup=False)
        return
    err.print(
        f"forked {run_dir} at tick {at} into {out_dir}"
        + (f" with {', '.join(sets)}" if sets else ""),
        markup=False,
    )
    _print_summary(summary, out_dir)
