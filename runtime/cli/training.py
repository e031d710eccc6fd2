"""agora train: PPO on the environments."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from runtime.cli.output import Table, app, err, fail, out, progress, role_failed
from runtime.errors import RoleFailure, RunDirError, ScenarioError

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


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
        fail(problems)
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
    table.add_row("mean", f"{__import__('numpy').mean(result['trained']):.3f}", f"{__import__('numpy').mean(result['scripted']):.3f}")
    out.print(table)
    out.print(f"learning curve: first iteration {result['first_return']:.3f}, last {result['last_return']:.3f} "
              f"({result['env_steps']:,} env steps)", markup=False)
    out.print(f"wrote {out_dir}/curve.csv, curve.png, checkpoints/, policy.npz, eval.json", markup=False)
