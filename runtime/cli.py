"""The ``agora`` command line. User mistakes exit 2 with a one-line reason each, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from runtime.recording import RunDirError
from runtime.scenario import ScenarioError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=(
        "Agora: a runtime and simulator for economies of autonomous agents.\n\n"
        "Run a scenario file into a recorded run directory (agora run), check scenario files "
        "(agora validate, agora schema), prove a run replays bit for bit (agora replay --verify), "
        "analyse runs (agora analyze, agora replay --at, agora query), "
        "train a negotiator with PPO on agora/Market-v0 (agora train), "
        "run parameter sweeps on local processes or Ray (agora sweep), and measure the kernel (agora bench)."
    ),
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def _fail(lines: list[str], code: int = 2) -> None:
    for line in lines:
        err.print(f"error: {line}", markup=False)
    raise typer.Exit(code)


def _progress(total: int, quiet: bool, label: str) -> tuple[Any, Any]:
    if quiet or not sys.stderr.isatty():
        return None, None
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"), TimeRemainingColumn(),
                   console=err, transient=True)
    task = bar.add_task(label, total=total)
    return bar, (lambda tick: bar.update(task, completed=tick))


def _default_out(scenario: Path) -> Path:
    base = Path("runs") / scenario.stem
    candidate, n = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


@app.command()
def run(
    scenario: Annotated[Optional[Path], typer.Argument(help="Scenario TOML file, e.g. scenarios/marketplace.toml.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory to write (default: runs/<scenario name>[-N]).")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Override the scenario's seed.")] = None,
    until: Annotated[Optional[int], typer.Option(min=1, help="Run this many ticks instead of the scenario's world.ticks.")] = None,
    device: Annotated[str, typer.Option(help="Where the roles' networks and the Kuramoto oscillators run: cpu (replays bit for bit) or cuda (a GPU, when torch sees one; the oscillators give the CPU's bits there, the networks agree to rounding).")] = "cpu",
    realtime: Annotated[Optional[float], typer.Option(min=0.0, help="Pace against the wall clock: FACTOR wall seconds per unit of virtual time (simpy.rt).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out directory.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")] = False,
    compare_baseline: Annotated[bool, typer.Option("--compare-baseline", help="Also run every role's baseline core (same seed) into OUT/baseline and print each role's metric beside its baseline's.")] = False,
    sign_key: Annotated[Optional[Path], typer.Option("--sign-key", help="Sign the run with the key in this file (made from the operating system's random source, mode 0600, if it does not exist): the summary carries an HMAC-SHA256 under it, and the ledger's keys come from it, not from the public seed. The key is never written into the run; agora replay --verify --key FILE checks it.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this run directory, which did not finish (killed, even by SIGKILL), from its last saved checkpoint; the finished directory holds the bytes an uninterrupted run writes.")] = None,
) -> None:
    """Run a scenario and record it: event log, per-tick metrics and summary.json with state hashes.

    With --resume DIR, continue an unfinished run instead (its scenario, seed and ticks are the run's own).
    """
    from runtime.recording import record

    secret = _sign_key(sign_key, create=resume is None)
    if resume is not None:
        if scenario is not None or out_dir is not None or seed is not None or until is not None or compare_baseline \
                or realtime is not None or device != "cpu":
            _fail(["--resume DIR takes no scenario, --out, --seed, --until, --device, --realtime or "
                   "--compare-baseline: the run's own are used"])
        _resume(resume, quiet, secret)
        return
    if scenario is None:
        _fail(["give a scenario file (e.g. agora run scenarios/marketplace.toml), or --resume DIR"])
    assert scenario is not None
    if device not in ("cpu", "cuda"):
        _fail([f"--device {device!r}: expected cpu or cuda"])
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            _fail(["--device cuda: torch sees no CUDA GPU on this machine (this install is the CPU build); use --device cpu"])
    if realtime is not None and not (0 < realtime < 1e6):
        _fail([f"--realtime must be a finite number > 0 of wall seconds per unit of virtual time, got {realtime}"])
    target = out_dir if out_dir is not None else _default_out(scenario)
    try:
        from runtime.scenario import load

        sc, _ = load(scenario)
        if sc.distributed is not None and sc.distributed.shards > 1:
            _run_sharded(scenario, target, seed, until, overwrite, quiet,
                         refused=[flag for flag, on in (("--compare-baseline", compare_baseline), ("--realtime", realtime is not None),
                                                        ("--device cuda", device == "cuda")) if on])
            return
        ticks = until if until is not None else sc.world.ticks
        bar, callback = _progress(ticks, quiet, f"{sc.world.name}")
        if bar is not None:
            with bar:
                summary = record(scenario, target, seed=seed, until=until, realtime=realtime, overwrite=overwrite,
                                 progress=callback, device=device, sign_key=secret)
        else:
            summary = record(scenario, target, seed=seed, until=until, realtime=realtime, overwrite=overwrite,
                             device=device, sign_key=secret)
    except ScenarioError as exc:
        _fail(exc.problems)
    except RunDirError as exc:
        _fail([str(exc)])
    if not quiet:
        _print_summary(summary, target)
    else:
        out.print(str(target), markup=False)
    if compare_baseline:
        base = record(scenario, target / "baseline", seed=seed, until=until, overwrite=True, baseline=True,
                      device=device)
        _print_comparison(summary, base)


def _sign_key(path: Path | None, create: bool) -> bytes | None:
    """The signing key in ``path`` (made there when ``create`` and absent), or None without one."""
    from runtime.recording import read_key

    if path is None:
        return None
    existed = path.exists()
    try:
        key = read_key(path, create=create)
    except RunDirError as exc:
        _fail([str(exc)])
    if not existed:
        err.print(f"made a new signing key in {path} (mode 0600); keep it: checking or resuming the run needs it",
                  markup=False)
    return key


def _resume(run_dir: Path, quiet: bool, key: bytes | None = None) -> None:
    """agora run --resume DIR."""
    from runtime.recording import RUN_FILE
    from runtime.resume import resume as do_resume

    try:
        ticks = json.loads((run_dir / RUN_FILE).read_text()).get("ticks", 0) if (run_dir / RUN_FILE).is_file() else 0
    except (ValueError, OSError):
        ticks = 0
    try:
        bar, callback = _progress(int(ticks) if isinstance(ticks, int) else 0, quiet, f"resume {run_dir.name}")
        if bar is not None:
            with bar:
                summary, start = do_resume(run_dir, callback, key)
        else:
            summary, start = do_resume(run_dir, None, key)
    except ScenarioError as exc:
        _fail(exc.problems)
    except RunDirError as exc:
        _fail([str(exc)])
    if not quiet:
        err.print(f"resumed {run_dir} from " + (f"the checkpoint of tick {start}" if start >= 0 else
                                                 "tick 0 (no checkpoint had been saved)"), markup=False)
        _print_summary(summary, run_dir)
    else:
        out.print(str(run_dir), markup=False)


def _run_sharded(scenario: Path, target: Path, seed: int | None, until: int | None, overwrite: bool, quiet: bool,
                 refused: list[str]) -> None:
    """agora run for a scenario with [distributed] shards > 1: the shards on Ray actors, totals to summary.json."""
    if refused:
        _fail([f"{refused[0]}: not available for a sharded world (distributed.shards > 1)"])
    try:
        import ray  # noqa: F401
    except ImportError:
        _fail(["distributed.shards: a sharded world runs on Ray actors; install the extra: pip install -e '.[ray]'"])
    from runtime.sharded import record_sharded

    if not quiet:
        err.print("starting the shards on Ray...", markup=False)
    s = record_sharded(scenario, target, seed=seed, until=until, overwrite=overwrite)
    if quiet:
        out.print(str(target), markup=False)
        return
    table = Table(title=f"agora run: {s['scenario']} (seed {s['seed']}), {s['shards']} shards", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    reports = s["shard_reports"]
    rows = [("ticks", f"{s['ticks']} in {s['wall_seconds']:.2f} s"),
            ("agents per shard", ", ".join(f"{r['agents']:,}" for r in reports)),
            ("tasks posted per shard", ", ".join(f"{r['tasks_posted']:,}" for r in reports)),
            ("credits held / issued", f"{s['credits_held_micro'] / 1e6:,.6f} / {s['supply_issued_micro'] / 1e6:,.6f}"
             + ("  (conserved)" if s["conserved"] else "  (NOT conserved)" if s["converged"]
                else "  (replicas not converged, e.g. a partition still in place: no total yet)")),
            ("lowest balance", f"{s['lowest_balance_micro'] / 1e6:,.6f} credits"),
            ("ledger replicas", f"converged after {s['settle_rounds']} settling ticks" if s["converged"]
             else f"{len(set(s['roots'].values()))} distinct states"),
            ("messages", ", ".join(f"shard {r['shard']}: {r['messages']['sent']:,} sent, {r['messages']['lost']:,} lost"
                                   for r in reports)),
            ("final state", s["final_state_hash"][:32]),
            ("run directory", str(target))]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


def _print_comparison(learned: dict[str, Any], base: dict[str, Any]) -> None:
    table = Table(title="roles: learned cores vs baselines (same seed)")
    for col in ("role", "metric", "learned", "baseline"):
        table.add_column(col)

    def fmt(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else f"{v:,}")

    h1, h0 = learned["totals"]["health"], base["totals"]["health"]
    if h1["episodes"]:
        for key in ("precision", "recall", "mean_time_to_repair", "credits_lost_micro", "unrepaired_at_end"):
            table.add_row("healing", key, fmt(h1[key]), fmt(h0[key]))
    for name, metrics in learned["totals"].get("roles", {}).items():
        other = base["totals"].get("roles", {}).get(name, {})
        keys = ("efficiency", "profit_per_agent", "catch_rate", "false_slash_rate", "checks", "caught", "invalid",
                "quality_gained", "credits_spent",
                "quality_per_credit", *sorted(k for k in metrics if k.startswith("mape")), "forecasts_sold",
                "forecasts_bought", "deferred", "net_value_micro", "profit_per_core_agent", "profit_per_zic_agent", "proposals_checked", "batches_proved",
                "batches_refused", "sent_back")
        for key in keys:
            if key in metrics:
                table.add_row(name, key, fmt(metrics[key]), fmt(other.get(key)))
    out.print(table)


def _settled(totals: dict[str, Any]) -> str:
    """The ledger's end state in words: converged, and after how many settle rounds."""
    settle = totals.get("settle") or {}
    rounds = settle.get("rounds")
    after = "" if rounds is None else f" after {rounds} settle round{'s' * (rounds != 1)} of anti-entropy"
    if totals["distinct_ledger_roots"] == 1:
        return "converged to one state" + after
    return f"{totals['distinct_ledger_roots']} distinct states{after} (a partition still in place cannot settle)"


SHOWN_METRICS = ("efficiency", "profit_per_agent", "catch_rate", "false_slash_rate", "mape_1", "mape_5",
                 "quality_per_credit", "net_value_micro")


def _print_summary(s: dict[str, Any], target: Path) -> None:
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
        ("supply held / issued", f"{t['supply_held_micro'] / 1e6:,.6f} / {t['supply_issued_micro'] / 1e6:,.6f} credits"
         + ("  (conserved)" if t["supply_held_micro"] == t["supply_issued_micro"] else "  (NOT conserved)")),
        ("ledger replicas", _settled(t)),
        ("ops refused", f"{t['ops_refused']:,}"),
        ("messages", f"{m['sent']:,} sent, {m['lost']:,} lost, {m['blocked']:,} blocked, {m['duplicated']:,} duplicated"),
        ("reputation accuracy", "n/a" if t["reputation_accuracy"] is None else f"{t['reputation_accuracy']:.3f}"),
        ("events", f"{t['events']:,}"),
        *([("healing", f"{h['episodes']} faults, {h['detections']} actions, precision "
            + ("n/a" if h["precision"] is None else f"{h['precision']:.2f}") + ", recall "
            + ("n/a" if h["recall"] is None else f"{h['recall']:.2f}") + ", repair "
            + ("n/a" if h["mean_time_to_repair"] is None else f"{h['mean_time_to_repair']:.1f} ticks")
            + f", {h['credits_lost_micro'] / 1e6:,.1f} credits of work lost")]
          if (h := t.get("health")) and h["episodes"] else []),
        *([("governance", ", ".join(f"#{p['id']} {p['state']}" for p in t["proposals"])
            + "  (" + ", ".join(f"{k}={v:g}" for k, v in sorted(t["params"].items())) + ")")] if t.get("proposals") else []),
        *[(name, ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in m.items()
                           if k in SHOWN_METRICS and isinstance(v, float)))
          for name, m in t.get("roles", {}).items()],
        ("final state", s["final_state_hash"][:32]),
        ("run directory", str(target)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    out.print(f"replay it: agora replay {target} --verify", markup=False)


@app.command()
def validate(
    scenarios: Annotated[list[Path], typer.Argument(help="One or more scenario files.")],
) -> None:
    """Check scenario files: exit 0, or exit 2 with one line per problem (file: key: reason)."""
    from runtime.scenario import load

    problems: list[str] = []
    for path in scenarios:
        try:
            load(path)
            out.print(f"{path}: ok", markup=False)
        except ScenarioError as exc:
            problems += exc.problems
    if problems:
        _fail(problems)


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editor completion and checking)."""
    from runtime.scenario import schema as make

    out.print_json(json.dumps(make()))


@app.command()
def replay(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by agora run.")],
    verify: Annotated[bool, typer.Option("--verify", help="Re-execute the run and compare every file it made, byte for byte, every figure of its summary and the state hashes at every checkpoint.")] = False,
    at: Annotated[Optional[int], typer.Option("--at", help="Rebuild the state after this tick from the recorded state (nearest checkpoint snapshot + deltas; no re-simulation).")] = None,
    export: Annotated[Optional[Path], typer.Option("--out", help="With --at: write the state table to this .parquet or .csv file (prices go to <name>.prices.csv beside a CSV, into the metadata of a Parquet file).")] = None,
    key: Annotated[Optional[Path], typer.Option("--key", help="With --verify: the key a run was signed with (agora run --sign-key): also prove that a holder of it made the run.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Replay a recorded run. --verify: exit 0 identical, 1 diverged or tampered (naming what). --at TICK: the state then.

    Without --key, a verified run is proven consistent (exactly what its scenario and seed make), not proven to come from anyone in particular.
    """
    from runtime.recording import RUN_FILE, read_key
    from runtime.replay import verify as do_verify

    if verify == (at is not None):
        _fail(["give exactly one of --verify or --at TICK"])
    if at is not None:
        if key is not None:
            _fail(["--key goes with --verify"])
        _state_at(run_dir, at, export)
        return
    try:
        secret = read_key(key) if key is not None else None
        ticks = _manifest_ticks(run_dir / RUN_FILE)
        bar, callback = _progress(ticks, quiet, "replay")
        if bar is not None:
            with bar:
                verdict = do_verify(run_dir, callback, secret)
        else:
            verdict = do_verify(run_dir, None, secret)
    except RunDirError as exc:
        _fail([str(exc)])
    for line in verdict.lines:
        (out if verdict.exit_code == 0 else err).print(f"{verdict.status}: {line}", markup=False)
    raise typer.Exit(verdict.exit_code)


def _manifest_ticks(path: Path) -> int:
    """The ticks a run's run.json names (0 when it cannot be read: the bar then has no total)."""
    try:
        ticks = json.loads(path.read_text()).get("ticks", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return ticks if isinstance(ticks, int) and not isinstance(ticks, bool) and 0 < ticks < 10**9 else 0


@app.command()
def fork(
    run_dir: Annotated[Path, typer.Argument(help="The parent: a run directory with saved checkpoints.")],
    at: Annotated[int, typer.Option("--at", min=0, help="The checkpoint tick to branch from (a tick whose world the parent saved: checkpoints/world_<tick>.npz).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory of the branch (new or empty).")],
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE to change from the fork on, with the keys of agora sweep: economy.price_elasticity=0.3, population.workers.cheat_probability=0.9, fault.3.at=120. What a world is built from (populations, regions, seed) cannot change.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out that is an Agora run directory.")] = False,
    sign_key: Annotated[Optional[Path], typer.Option("--sign-key", help="The key of a signed parent (agora run --sign-key); the branch is signed with it too.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary table.")] = False,
) -> None:
    """Branch a what-if run from a checkpoint of another run, optionally with changed parameters.

    The branch records from the tick after --at on; its summary names its parent (run and tick).
    Compare them with: agora analyze PARENT BRANCH.
    """
    from runtime.resume import fork as do_fork

    try:
        summary = do_fork(run_dir, at, sets or [], out_dir, overwrite=overwrite, key=_sign_key(sign_key, False))
    except ScenarioError as exc:
        _fail(exc.problems)
    except RunDirError as exc:
        _fail([str(exc)])
    if quiet:
        out.print(str(out_dir), markup=False)
        return
    err.print(f"forked {run_dir} at tick {at} into {out_dir}" + (f" with {', '.join(sets)}" if sets else ""),
              markup=False)
    _print_summary(summary, out_dir)


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for curve.csv, curve.png, checkpoints/, policy.npz and eval.json.")] = Path("runs/train"),
    env_id: Annotated[str, typer.Option("--env", help="Environment to train on (agora/Market-v0 is the one PPO trains).")] = "agora/Market-v0",
    total_steps: Annotated[int, typer.Option(min=1, help="Environment steps in all (summed over the vector's markets).")] = 200_000,
    num_envs: Annotated[int, typer.Option(min=1, help="Markets stepped together (the native vector env).")] = 16,
    num_steps: Annotated[int, typer.Option(min=1, help="Steps per market per rollout.")] = 128,
    n_agents: Annotated[int, typer.Option(min=2, help="Negotiators per market (one learns; the rest are ZI-C).")] = 8,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate (annealed to 0).")] = 3e-4,
    seed: Annotated[int, typer.Option(min=0, help="Seed: the same seed gives the same policy on the CPU.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, or cuda for a GPU when torch sees one.")] = "cpu",
    eval_episodes: Annotated[int, typer.Option(min=1, help="Episodes per held-out seed (1001-1005) in the final evaluation.")] = 20,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a negotiator with PPO (CleanRL-style, torch) on agora/Market-v0 and evaluate it against ZI-C.

    Writes the learning curve (CSV and PNG), checkpoints, the policy file and the evaluation on held-out seeds.

    A scenario loads the policy as a negotiator's core: core = "path/to/policy.npz".
    """
    import shutil

    problems = []
    if env_id != "agora/Market-v0":
        problems.append(f"--env {env_id!r}: PPO here trains agora/Market-v0 (the negotiator); agora/Refactor-v0 is for your own trainers")
    if device not in ("cpu", "cuda"):
        problems.append(f"--device {device!r}: expected cpu or cuda")
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append("--device cuda: torch sees no CUDA GPU on this machine")
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"--out {out_dir}: exists and is not a directory")
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        problems.append(f"--out {out_dir}: folder is not empty; pass --overwrite or choose another --out")
    if problems:
        _fail(problems)
    if out_dir.exists() and overwrite:
        shutil.rmtree(out_dir)
    from environments.ppo import Args, train as run_ppo

    args = Args(total_steps=total_steps, num_envs=num_envs, num_steps=num_steps, n_agents=n_agents, lr=lr, seed=seed,
                device=device, eval_episodes=eval_episodes)
    iterations = max(1, total_steps // (num_envs * num_steps))
    if quiet or not sys.stderr.isatty():
        curve_line = None if quiet else (lambda it, n, r: err.print(f"iteration {it}/{n}: mean return {r:.3f}", markup=False)
                                          if it == 1 or it % 10 == 0 or it == n else None)
        result = run_ppo(args, out_dir, curve_line)
    else:
        bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("iterations"),
                       TextColumn("{task.fields[ret]}"), TimeRemainingColumn(), console=err, transient=True)
        task = bar.add_task("train", total=iterations, ret="")
        with bar:
            result = run_ppo(args, out_dir, lambda it, n, r: bar.update(task, completed=it, ret=f"return {r:.3f}"))
    table = Table(title=f"PPO on agora/Market-v0: mean episode return on held-out seeds ({eval_episodes} episodes each)")
    for col in ("seed", "trained", "scripted (ZI-C)"):
        table.add_column(col)
    for s_, a, b in zip(result["seeds"], result["trained"], result["scripted"], strict=True):
        table.add_row(str(s_), f"{a:.3f}", f"{b:.3f}")
    table.add_row("mean", f"{np.mean(result['trained']):.3f}", f"{np.mean(result['scripted']):.3f}")
    out.print(table)
    out.print(f"learning curve: first iteration {result['first_return']:.3f}, last {result['last_return']:.3f} "
              f"({result['env_steps']:,} env steps)", markup=False)
    out.print(f"wrote {out_dir}/curve.csv, curve.png, checkpoints/, policy.npz, eval.json", markup=False)


def _state_at(run_dir: Path, tick: int, export: Path | None) -> None:
    import time

    from runtime.replay import open as open_run

    if export is not None and export.suffix not in (".parquet", ".csv"):
        _fail([f"--out {export}: the file name must end in .parquet or .csv"])
    if export is not None and export.is_dir():
        _fail([f"--out {export}: is a directory; give a file name ending in .parquet or .csv"])
    start = time.perf_counter()
    try:
        run = open_run(run_dir)
        table, facts = run.state_at(tick)
    except (RunDirError, ScenarioError) as exc:
        _fail([str(exc)] if isinstance(exc, RunDirError) else exc.problems)
    wall = time.perf_counter() - start
    alive = table.column("alive").to_numpy(zero_copy_only=False)
    balance = table.column("balance").to_numpy()
    summary = Table(title=f"state after tick {tick}: {run_dir}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("accounts", f"{table.num_rows:,} ({int(alive.sum()):,} alive)")
    summary.add_row("balances", f"{balance.sum() / 1e6:,.6f} credits in all")
    summary.add_row("stakes", f"{table.column('stake').to_numpy().sum() / 1e6:,.6f} credits in all")
    summary.add_row("prices", ", ".join(f"{k.removeprefix('price_')}: {v / 1e6:.4f}" for k, v in facts["prices_micro"].items()))
    summary.add_row("rebuilt from", f"snapshot of tick {facts['from_snapshot']}" if facts["from_snapshot"] >= 0 else "tick 0")
    summary.add_row("state hash", f"{facts['state_hash'][:16]} ({'matches the live run' if facts['matches_live'] else 'DIFFERS from the live run: ' + str(facts['recorded_hash'])[:16]})")
    summary.add_row("time", f"{wall:.3f} s")
    out.print(summary)
    if export is not None:
        import pyarrow as pa
        import pyarrow.csv
        import pyarrow.parquet as pq

        try:
            export.parent.mkdir(parents=True, exist_ok=True)
            if export.suffix == ".parquet":
                meta = {b"agora": json.dumps({k: v for k, v in facts.items()}).encode()}
                pq.write_table(table.replace_schema_metadata(meta), export)
            else:
                pa.csv.write_csv(table, export)
                prices = pa.table({"skill": [int(k.removeprefix("price_")) for k in facts["prices_micro"]],
                                   "price_micro": list(facts["prices_micro"].values())})
                pa.csv.write_csv(prices, export.with_name(export.stem + ".prices.csv"))
        except (OSError, pa.ArrowException) as exc:
            _fail([f"--out {export}: cannot write it ({getattr(exc, 'strerror', None) or exc})"])
        out.print(f"wrote {export}", markup=False)
    if not facts["matches_live"]:
        raise typer.Exit(1)


@app.command()
def analyze(
    run_dirs: Annotated[list[Path], typer.Argument(help="One run directory, or several side by side (seeds or settings).")],
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write a self-contained HTML report with plots to this file.")] = None,
    fmt_: Annotated[str, typer.Option("--format", help="table (default) or json.")] = "table",
) -> None:
    """A run's indicators (wealth inequality, prices, volume, efficiency, slashes, ledger convergence, synchronisation, tension, healing, forecasts) and each role against its baseline.

    With several runs: side by side, the difference from the first, and the mean with a 95% confidence interval (for seeds of one scenario). A fork (agora fork) beside its parent: the tick they part at, and a plot of it. --report writes a self-contained HTML page with plots.
    """
    from runtime.analysis import analyze as run_analysis
    from runtime.analysis import compare, fmt, parting, report_html, role_rows, scalar_rows
    from runtime.replay import open as open_run

    if fmt_ not in ("table", "json"):
        _fail([f"--format {fmt_!r}: expected table or json"])
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        _fail([f"--report {report}: the file name must end in .html"])
    if report is not None and report.is_dir():
        _fail([f"--report {report}: is a directory; give a file name ending in .html"])
    analyses, splits = [], []
    try:
        runs = [open_run(d) for d in run_dirs]
        for run_ in runs:
            analyses.append(run_analysis(run_))
        splits = [split for parent in runs for child in runs if (split := parting(parent, child)) is not None]
    except RunDirError as exc:
        _fail([str(exc)])
    except ScenarioError as exc:
        _fail(exc.problems)
    if report is not None:
        try:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(report_html(analyses, splits))
        except OSError as exc:
            _fail([f"--report {report}: cannot write it ({exc.strerror})"])
    if fmt_ == "json":
        payload = analyses[0] if len(analyses) == 1 else {"runs": analyses, "comparison": compare(analyses),
                                                          "forks": splits}
        out.print_json(json.dumps(payload, default=float))
        return
    for split in splits:
        where = (f"they part at tick {split['parts_at']} ({', '.join(split['first_differing'][:4])} differ first)"
                 if split["parts_at"] is not None else "their metrics are the same from the fork on")
        out.print(f"{split['fork']} forks {split['parent']} at tick {split['fork_tick']}"
                  + (f" with {', '.join(split['sets'])}" if split["sets"] else "") + f": {where}", markup=False)
    names = [str(d) for d in run_dirs]
    table = Table(title="indicators" if len(analyses) == 1 else "indicators, side by side")
    table.add_column("indicator")
    for n in names:
        table.add_column(n)
    if len(analyses) > 1:
        table.add_column("mean [95% CI]")
        for row in compare(analyses)["rows"]:
            diffs = row["diff_from_first"]
            cells = [fmt(v) + (f" ({d:+.3g})" if i and isinstance(d, (int, float)) else "")
                     for i, (v, d) in enumerate(zip(row["values"], diffs, strict=True))]
            table.add_row(row["indicator"], *cells, f"{fmt(row['mean'])} [{fmt(row['ci95'][0])}, {fmt(row['ci95'][1])}]")
    else:
        for label, value in scalar_rows(analyses[0]):
            table.add_row(label, fmt(value))
    out.print(table)
    for a, n in zip(analyses, names, strict=True):
        rows = role_rows(a)
        if rows:
            t = Table(title=f"roles: {n}" + (" (baseline from DIR/baseline)" if a.get("baseline") else ""))
            for col in ("population", "metric", "learned", "baseline"):
                t.add_column(col)
            for p, k, v, b in rows:
                t.add_row(p, k, fmt(v), fmt(b))
            out.print(t)
    if report is not None:
        out.print(f"wrote {report}", markup=False)


@app.command()
def query(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over the tables events, metrics and state_deltas.")],
    fmt_: Annotated[str, typer.Option("--format", help="table (default), csv or json.")] = "table",
    limit: Annotated[int, typer.Option(min=1, help="Most rows to print as a table.")] = 50,
) -> None:
    """Run SQL over a recorded run, e.g. agora query runs/a "select kind, count(*) from events group by kind".

    One read-only query runs (SELECT, WITH, VALUES, FROM, DESCRIBE, SHOW, SUMMARIZE), in a sandbox
    that reads the run's tables and no other file, network or extension.
    """
    import duckdb
    from rich.text import Text

    from runtime.replay import open as open_run
    from runtime.run_data import QueryRefused

    if fmt_ not in ("table", "csv", "json"):
        _fail([f"--format {fmt_!r}: expected table, csv or json"])
    try:
        result = open_run(run_dir).query(sql)
    except RunDirError as exc:
        _fail([str(exc)])
    except ScenarioError as exc:
        _fail(exc.problems)
    except QueryRefused as exc:
        _fail([f"SQL: {exc}"])
    except duckdb.Error as exc:  # a mistake in the SQL, or an access the sandbox denies
        _fail([f"SQL: {_first_line(exc)}"])
    if fmt_ == "csv":
        import pyarrow.csv

        buf = __import__("io").BytesIO()
        pyarrow.csv.write_csv(result, buf)
        sys.stdout.write(buf.getvalue().decode())
        return
    if fmt_ == "json":
        out.print_json(json.dumps(result.to_pylist(), default=str))
        return
    # Text, not str: a cell or a column name such as "[/x]" is data, never rich markup.
    table = Table()
    for name in result.column_names:
        table.add_column(Text(name))
    shown = result.slice(0, limit)
    # by column, not to_pylist()'s dicts, which keep one of two columns with the same name
    for row in zip(*(column.to_pylist() for column in shown.columns)):
        table.add_row(*[Text(str(value)) for value in row])
    out.print(table)
    if result.num_rows > limit:
        out.print(f"({result.num_rows:,} rows; showing {limit}: use --limit or --format csv)", markup=False)


def _first_line(exc: Exception) -> str:
    """The first non-blank line of an error's message (DuckDB's run on with context lines)."""
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


@app.command()
def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file to sweep.")],
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=V1,V2,...: a parameter and its values (repeat for a grid). KEY is dotted: economy.price_elasticity, world.ticks, population.workers.stake (a population by name), fault.0.at (a list entry by index).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per combination: the scenario's seed, seed+1, ...")] = 1,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder of the sweep: a run directory per run, and results.parquet (default: runs/sweep-<scenario name>).")] = None,
    backend: Annotated[str, typer.Option(help="local (processes on this machine) or ray (a Ray cluster; needs the ray extra: pip install -e '.\\[ray]').")] = "local",
    address: Annotated[Optional[str], typer.Option(help="With --backend ray: the cluster's address (default: start Ray on this machine).")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Runs at a time (default: this machine's CPU count).")] = None,
    until: Annotated[Optional[int], typer.Option(min=1, help="Run this many ticks instead of each scenario's world.ticks.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no table; print the results file.")] = False,
) -> None:
    """Run a grid of a scenario's parameter values x seeds; each run a recorded run directory, plus results.parquet.

    Re-running the same command resumes: finished runs are kept and not redone. A failed run (or one whose
    worker dies) is tried once more, then reported; the exit status is 1 if any run failed.
    """
    from runtime.sweep import RESULTS, SweepError, parse_sets, plan
    from runtime.sweep import sweep as do_sweep

    if backend not in ("local", "ray"):
        _fail([f"--backend {backend!r}: expected local or ray"])
    if backend == "local" and address is not None:
        _fail(["--address: only with --backend ray"])
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            _fail(["--backend ray: Ray is not installed; install the extra: pip install -e '.[ray]'"])
    target = out_dir if out_dir is not None else Path("runs") / f"sweep-{scenario.stem}"
    try:
        specs = plan(scenario, parse_sets(sets or []), seeds, target, until)
    except (ScenarioError, SweepError) as exc:
        _fail(exc.problems)
    show = not quiet and sys.stderr.isatty()
    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"), TimeRemainingColumn(),
                   console=err, transient=True) if show else None
    task = bar.add_task("sweep", total=len(specs)) if bar is not None else None

    def report(outcome: Any) -> None:
        if bar is not None:
            bar.update(task, advance=1)
        elif not quiet:
            err.print(f"{outcome.status}: {outcome.spec.run_id}" + (f" ({outcome.error})" if outcome.error else ""),
                      markup=False)

    try:
        if bar is not None:
            with bar:
                outcomes = do_sweep(specs, backend, workers, address, report)
        else:
            outcomes = do_sweep(specs, backend, workers, address, report)
    except SweepError as exc:
        _fail(exc.problems)
    failed = [o for o in outcomes if o.status == "failed"]
    if not quiet:
        table = Table(title=f"agora sweep: {len(specs)} runs, {backend}")
        for col in ("run", "status", "tries", "final state"):
            table.add_column(col)
        from runtime.recording import read_summary

        for o in outcomes:
            state = read_summary(target / o.spec.run_id)[0]["final_state_hash"][:16] if o.status != "failed" else o.error
            table.add_row(o.spec.run_id, o.status, str(o.attempts), state)
        out.print(table)
    out.print(str(target / RESULTS), markup=False)
    if failed:
        for o in failed:
            err.print(f"error: run {o.spec.run_id} failed twice: {o.error}", markup=False)
        raise typer.Exit(1)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes (seconds instead of minutes).")] = False,
    only: Annotated[Optional[str], typer.Option(help="Run these suites only, comma-separated: kernel, exchange, market, marketplace, cores, coordination, roles, ledger, envs, analysis, scaleout.")] = None,
) -> None:
    """Run the benchmark suite and print tables with the peers side by side."""
    suites = _benchmarks()
    names, run_all = suites.SUITES, suites.run_all
    if only is not None:
        unknown = [name for name in only.split(",") if name not in names]
        if unknown:
            _fail([f"--only {only!r}: {unknown[0]!r} is not a suite; expected one or more of {', '.join(names)} (comma-separated)"])
    run_all(quick=quick, only=only, console=out)


def _register_fuzz() -> None:
    from runtime.fuzz import fuzz_command

    app.command("fuzz")(fuzz_command)


_register_fuzz()


def _benchmarks() -> Any:
    """The benchmark suite, found through the ``agora.benchmarks`` entry point (the runtime does not
    import the benchmarks package: it depends on the runtime, not the other way round)."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="agora.benchmarks", name="suites"))
    if not found:
        _fail(["the benchmark suite is not installed (entry point agora.benchmarks: suites); "
               "install Agora from its source tree: pip install -e ."])
    return found[0].load()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
