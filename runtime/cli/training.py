"""agora train: PPO on the environments."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import TextColumn

from runtime.cli.output import Table, app, err, fail, out, progress_bar
from runtime.kernel.settings import read_value


@app.command()
def train(
    scenario: Annotated[
        Path | None,
        typer.Argument(
            help=(
                "A scenario file to train in: one seat of --learner learns in its full World "
                "(agora/Scenario-v0). Without it: agora/Market-v0."
            )
        ),
    ] = None,
    learner: Annotated[
        str,
        typer.Option(
            help=(
                "With SCENARIO: the population one seat of which learns (its role's control form "
                "must be a shade policy's: negotiators)."
            )
        ),
    ] = "negotiators",
    ticks: Annotated[
        int | None,
        typer.Option(min=1, help="With SCENARIO: ticks per episode (default: the scenario's own)."),
    ] = None,
    seats_per_world: Annotated[
        int,
        typer.Option(
            min=1,
            help="With SCENARIO: seats of --learner that learn in each World, sharing the "
            "policy (one tick gives that many steps; --num-envs must be a multiple).",
        ),
    ] = 1,
    reward: Annotated[
        str,
        typer.Option(
            help="With SCENARIO: the reward, by name: wealth (balance plus stake gained) or one "
            "of the role's own (negotiators: profit, price minus cost of each contract)."
        ),
    ] = "wealth",
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="With SCENARIO: KEY=VALUE to change in it for training and evaluation, with the "
            "keys of agora sweep: population.negotiators.core=baseline.",
        ),
    ] = None,
    init_policy: Annotated[
        Path | None,
        typer.Option(
            help="A policy file written by agora train whose actor starts the training "
            "(a warm start, e.g. from Market-v0)."
        ),
    ] = None,
    eval_seeds: Annotated[
        int, typer.Option(min=1, max=5, help="Held-out seeds (from 1001) of the final evaluation.")
    ] = 5,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for curve.csv, curve.png, checkpoints/, policy.npz and eval.json."
        ),
    ] = Path("runs/train"),
    env_id: Annotated[
        str,
        typer.Option(
            "--env", help="Environment to train on (agora/Market-v0 is the one PPO trains)."
        ),
    ] = "agora/Market-v0",
    total_steps: Annotated[
        int,
        typer.Option(min=1, help="Environment steps in all (summed over the vector's markets)."),
    ] = 200_000,
    num_envs: Annotated[
        int, typer.Option(min=1, help="Markets stepped together (the native vector env).")
    ] = 16,
    num_steps: Annotated[int, typer.Option(min=1, help="Steps per market per rollout.")] = 128,
    n_agents: Annotated[
        int, typer.Option(min=2, help="Negotiators per market (one learns; the rest are ZI-C).")
    ] = 8,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate (annealed to 0).")] = 3e-4,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed: the same seed gives the same policy on the CPU.")
    ] = 1,
    device: Annotated[
        str, typer.Option(help="cpu, or cuda for a GPU when torch sees one.")
    ] = "cpu",
    eval_episodes: Annotated[
        int,
        typer.Option(min=1, help="Episodes per held-out seed (1001-1005) in the final evaluation."),
    ] = 20,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a negotiator with PPO (CleanRL-style, torch) on agora/Market-v0, or in a SCENARIO, and
    evaluate it against ZI-C.

    With SCENARIO, one seat of --learner learns among the scenario's own agents (agora train
    scenarios/marketplace.toml --learner negotiators).

    Writes the learning curve (CSV and PNG), checkpoints, the policy file and the evaluation on
    held-out seeds.

    A scenario loads the policy as a negotiator's core: core = "path/to/policy.npz".
    """
    import shutil

    problems = []
    if env_id != "agora/Market-v0":
        problems.append(
            f"--env {env_id!r}: PPO here trains agora/Market-v0 (the negotiator); "
            f"agora/Refactor-v0 is for your own trainers"
        )
    if device not in ("cpu", "cuda"):
        problems.append(f"--device {device!r}: expected cpu or cuda")
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            problems.append("--device cuda: torch sees no CUDA GPU on this machine")
    if out_dir.exists() and not out_dir.is_dir():
        problems.append(f"--out {out_dir}: exists and is not a directory")
    elif out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        problems.append(
            f"--out {out_dir}: folder is not empty; pass --overwrite or choose another --out"
        )
    if scenario is not None and not scenario.is_file():
        problems.append(f"SCENARIO {scenario}: no such file")
    elif scenario is not None:
        from runtime.kernel.scenario import ScenarioError, load

        try:
            if load(scenario)[0].world.engine == "gpu":
                problems.append(
                    f'SCENARIO {scenario}: world.engine = "gpu": training runs the exact '
                    'engine\'s World; set engine = "exact" (or remove the key) to train in it'
                )
        except ScenarioError:
            pass  # the trainer's own checks name what is wrong with the file
    if seats_per_world > 1 and scenario is None:
        problems.append("--seats-per-world: needs a SCENARIO (Market-v0 has one learner)")
    elif num_envs % seats_per_world:
        problems.append(
            f"--num-envs {num_envs}: expected a multiple of --seats-per-world {seats_per_world}"
        )
    settings = {}
    for item in sets or []:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            problems.append(
                f"--set {item!r}: expected KEY=VALUE, e.g. population.negotiators.count=20"
            )
        else:
            settings[key.strip()] = read_value(raw.strip())
    if (sets or reward != "wealth") and scenario is None:
        problems.append("--set and --reward: need a SCENARIO (Market-v0's reward is fixed)")
    if init_policy is not None and not init_policy.is_file():
        problems.append(f"--init-policy {init_policy}: no such file")
    if problems:
        fail(problems)
    trainer = _trainer()
    scenario_file = None if scenario is None else str(scenario)
    init_file = None if init_policy is None else str(init_policy)
    trainer_problems = trainer.problems(
        scenario=scenario_file,
        learner=learner,
        ticks=ticks,
        init_policy=init_file,
        seats_per_world=seats_per_world,
        reward=reward,
        settings=settings or None,
    )
    if trainer_problems:
        fail(trainer_problems)
    if out_dir.exists() and overwrite:
        shutil.rmtree(out_dir)
    args = {
        "total_steps": total_steps,
        "num_envs": num_envs,
        "num_steps": num_steps,
        "n_agents": n_agents,
        "lr": lr,
        "seed": seed,
        "device": device,
        "eval_episodes": eval_episodes,
        "eval_seeds": tuple(range(1001, 1001 + eval_seeds)),
        "scenario": scenario_file,
        "learner": learner,
        "seats_per_world": seats_per_world,
        "reward": reward,
        "settings": settings or None,
        "ticks": ticks,
        "init_policy": init_file,
    }
    if quiet or not sys.stderr.isatty():
        result = trainer.train(out_dir, None if quiet else _print_iteration, **args)
    else:
        bar = progress_bar("train", "iterations", TextColumn("{task.fields[ret]}"))
        task = bar.add_task("train", total=None, ret="")
        with bar:
            result = trainer.train(
                out_dir,
                lambda it, n, r: bar.update(task, completed=it, total=n, ret=f"return {r:.3f}"),
                **args,
            )
    _print_result(result, scenario, learner, eval_episodes, out_dir)


def _print_iteration(iteration: int, iterations: int, mean_return: float) -> None:
    """One line on stderr for the first, every tenth and the last iteration."""
    if iteration == 1 or iteration % 10 == 0 or iteration == iterations:
        err.print(
            f"iteration {iteration}/{iterations}: mean return {mean_return:.3f}", markup=False
        )


def _print_result(
    result: dict[str, Any], scenario: Path | None, learner: str, eval_episodes: int, out_dir: Path
) -> None:
    """The evaluation table (trained policy against ZI-C per held-out seed) and the files
    written."""
    where = "agora/Market-v0" if scenario is None else f"{scenario} ({learner}, one seat)"
    table = Table(
        title=f"PPO on {where}: mean episode return on held-out seeds "
        f"({eval_episodes} episodes each)"
    )
    for col in ("seed", "trained", "scripted (ZI-C)"):
        table.add_column(col)
    for seed, trained, scripted in zip(
        result["seeds"], result["trained"], result["scripted"], strict=True
    ):
        table.add_row(str(seed), f"{trained:.3f}", f"{scripted:.3f}")
    table.add_row(
        "mean",
        f"{statistics.fmean(result['trained']):.3f}",
        f"{statistics.fmean(result['scripted']):.3f}",
    )
    out.print(table)
    out.print(
        f"learning curve: first iteration {result['first_return']:.3f}, "
        f"last {result['last_return']:.3f} ({result['env_steps']:,} env steps)",
        markup=False,
    )
    out.print(
        f"wrote {out_dir}/curve.csv, curve.png, checkpoints/, policy.npz, eval.json", markup=False
    )


def _trainer() -> Any:
    """The PPO trainer, found through the ``agora.trainers`` entry point ``ppo`` (the runtime does
    not import the environments package: it depends on the runtime, not the other way round)."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="agora.trainers", name="ppo"))
    if not found:
        fail(
            [
                "the PPO trainer is not installed (entry point agora.trainers: ppo); "
                "install Agora from its source tree: pip install -e ."
            ]
        )
    return found[0].load()
