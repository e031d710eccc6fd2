# %% [markdown]
# # Agora from Python
#
# Build the shipped marketplace, run it, and look at it as tables, the way a Mesa user would.
# Run the cells in order (VS Code and Jupyter read `# %%` as cell marks), or the whole file with
# `python examples/notebook_quickstart.py`.

# %%
from pathlib import Path

import polars as pl

import agora

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "marketplace.toml"
sim = agora.Simulation.from_file(SCENARIO, until=60)

# %% [markdown]
# Step one tick at a time, or run to a tick.

# %%
sim.step()
sim.run(40)
print(f"{sim.tick} ticks run")

# %% [markdown]
# Each population is a DataFrame with one row per agent: money in credits (and the exact
# micro-credits), reputation, health, and the role's own per-agent state.

# %%
workers = sim.population("workers")
print(workers.select(["account", "balance_credits", "stake_credits", "quality", "done"]).describe())

# %% [markdown]
# The ledger as every account's home replica sees it, and the metrics of every tick so far (money
# in exact micro-credits, `*_micro`, each beside the same figure in credits, `*_credits`).

# %%
balances = sim.balances()
by_population = (
    balances.group_by("population").agg(pl.col("balance_credits").sum()).sort("population")
)
print(by_population)
metrics = sim.metrics()
print(metrics.select(["tick", "mean_price_credits", "tasks_done", "volume_credits"]).tail(5))

# %% [markdown]
# Finish the run: the ledger replicas settle to one state.

# %%
sim.run()
sim.close()
print("replicas agree:", sim.world.distinct_roots() == 1)
