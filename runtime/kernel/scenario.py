"""Scenario files: TOML in, a typed and validated :class:`Scenario` out, or one line per problem.

Every parameter has a default and a description (``agora schema`` prints them as JSON Schema);
unknown keys are errors, so a typo never passes silently. Credits in scenario files are whole
credits; inside the runtime they become int64 micro-credits.
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runtime.kernel.errors import ScenarioError

__all__ = ["Scenario", "ScenarioError", "PopulationConfig", "load", "parse", "schema"]

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

MAX_CREDITS = 10**9
"""Largest credit amount a scenario may name in one place (10^9 credits = the ledger's largest
entry, 10^15 micro-credits); the sum of what a scenario mints is checked separately."""
MAX_TICKS = 10_000_000
"""Largest tick count or tick offset a scenario may name."""
MAX_TIME = 1e6
"""Largest virtual time (a tick's length, a latency, a jitter) a scenario may name."""
MAX_FILE_BYTES = 4 << 20
"""Largest scenario file, in characters."""
MAX_REGIONS = 256
"""Most regions (ledger replicas) a world may have: each replica holds every account."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class WorldConfig(_Strict):
    """The run as a whole."""

    name: str = Field(
        "unnamed", max_length=200, description="Scenario name, recorded in the run's summary."
    )
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of every random stream (numpy SeedSequence)."
    )
    ticks: int = Field(
        100, ge=1, le=MAX_TICKS, description="Ticks to run unless --until says otherwise."
    )
    tick_length: float = Field(
        1.0, gt=0, le=MAX_TIME, description="Virtual time per tick (one tick = one hour of uptime)."
    )
    checkpoint_every: int = Field(
        25, ge=1, le=MAX_TICKS, description="Ticks between state-hash checkpoints."
    )
    engine: Literal["exact", "gpu"] = Field(
        "exact",
        description="`exact`: the reference model on the CPU (continuous double auction, z3 "
        "proofs, full replicas; any role, governance, sharding). `gpu`: every part of the tick as "
        "integer tensor steps on one device (`agora run --device cuda`, or the CPU), with the "
        "model choices in docs/howto/gpu.md; the same integers on CPU and GPU. Runs the built-in "
        'roles, needs market.mechanism = "call".',
    )


class Link(_Strict):
    """An edge of the region graph."""

    a: str = Field(max_length=64, description="Region at one end.")
    b: str = Field(max_length=64, description="Region at the other end.")
    latency: float = Field(
        0.05, ge=0, le=MAX_TIME, description="One-way latency, virtual time units."
    )


class NetworkConfig(_Strict):
    """Regions (one ledger replica each) and the latency between them."""

    regions: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        ["main"],
        min_length=1,
        max_length=MAX_REGIONS,
        description="Region names; agents are spread over them by account id.",
    )
    links: list[Link] = Field(
        [],
        max_length=MAX_REGIONS * MAX_REGIONS,
        description="Edges with latency; regions left unlinked are joined at default_latency.",
    )
    default_latency: float = Field(
        0.1, ge=0, le=MAX_TIME, description="Latency between regions with no explicit path."
    )
    graph_file: str | None = Field(
        None,
        max_length=1024,
        description="GraphML file of the region graph (edge attribute 'latency'); replaces "
        "regions/links. Relative to the scenario file.",
    )


class BusConfig(_Strict):
    """The message bus between replicas and agents."""

    loss: Probability = Field(0.0, description="Probability a message is lost.")
    duplication: Probability = Field(0.0, description="Probability a message is delivered twice.")
    jitter: float = Field(
        0.0, ge=0, le=MAX_TIME, description="Extra uniform random delay, virtual time units."
    )


class EconomyConfig(_Strict):
    """Ledger replication and the market's parameters."""

    anti_entropy_every: int = Field(
        5, ge=1, le=MAX_TICKS, description="Ticks between state-sync rounds between replicas."
    )
    task_unit_credits: int = Field(
        1, ge=0, le=1_000_000, description="Credits earned per task unit at the base price."
    )
    uptime_millicredits_per_hour: int = Field(
        100, ge=0, le=MAX_CREDITS, description="Uptime reward, milli-credits per hour (0.1 credit)."
    )
    price_elasticity: float = Field(
        0.5, ge=0, le=100, description="How strongly prices follow demand minus supply."
    )
    price_max_step: Probability = Field(0.05, description="Largest relative price move per tick.")
    network_compute_start: float = Field(
        0.0,
        ge=0,
        le=1e15,
        description="CPU-hours already in the network (sets the contribution multiplier).",
    )
    n_skills: int = Field(8, ge=1, le=256, description="Number of task skill categories.")

    @model_validator(mode="before")
    @classmethod
    def _no_unbonding(cls, data: Any) -> Any:
        """Refuse the former ``unbonding_ticks`` key with the fix, not as an unknown key."""
        if isinstance(data, dict) and "unbonding_ticks" in data:
            raise ValueError(
                "unbonding_ticks is not a parameter: an UNSTAKE frees stake at once and a slash "
                "reaches only stake still held; delete the key"
            )
        return data


class MarketConfig(_Strict):
    """How the task auction clears."""

    mechanism: Literal["cda", "call"] = Field(
        "cda",
        description="The negotiators' task auction: `cda`, a continuous double auction (each post "
        "trades at once against the best standing order, in arrival order: sequential by its "
        "rules), or `call`, a call market in each round (every post of the round is collected, "
        "then the round clears at one price by sorting bids and asks; price-time priority within "
        "the round).",
    )


class PopulationConfig(_Strict):
    """A population of agents of one role, stepped as arrays.

    The keys every population has are fields here; a role's own keys (``post_rate`` for a requester,
    ``stake`` for a worker, ...) are checked against that role's parameter model and kept in
    :attr:`params`. In a scenario file they may be written beside the common keys or in a
    ``[population.params]`` table.
    """

    name: str = Field(
        min_length=1, max_length=64, description="Unique population name, used by faults."
    )
    role: str = Field(
        min_length=1,
        max_length=200,
        description="What the agents do: a registered role (`agora roles` lists them: requester, "
        "worker, healer, critic, world_model, refactor, negotiator, ticker, exchange) or "
        '"package.module:ClassName", a role in your own code, imported from the scenario\'s '
        "folder first, then from the Python path.",
    )
    count: int = Field(ge=0, le=50_000_000, description="Number of agents.")
    initial_credits: int = Field(
        0, ge=0, le=MAX_CREDITS, description="Credits minted to each agent at tick 0."
    )
    core: str | None = Field(
        None,
        max_length=1024,
        description="Roles with a learned core: 'learned' (default), 'baseline', or the path of a "
        "core file of that role (.npz, written to a run's cores/ folder), relative to the "
        "scenario file and inside its folder, which the learned core starts from; `agora run "
        "--compare-baseline` reruns with every core at baseline.",
    )
    seats: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Agents of this population (the first `seats`) that outside agents drive "
        "over the network when the scenario is served with `agora serve`; each seat gets its own "
        "token. The role needs a control form (negotiator, requester, worker, critic). Elsewhere "
        "(`agora run`, the environments) the key has no effect.",
    )
    params: dict[str, Any] = Field(
        {},
        description="The role's own keys (`agora schema` lists each role's); they may also be "
        "written beside the keys above.",
    )

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        """Move keys that are not common to every population into ``params``."""
        if not isinstance(data, dict):
            return data
        own = {k: v for k, v in data.items() if k not in cls.model_fields}
        if not own:
            return data
        params = data.get("params", {})
        if not isinstance(params, dict):
            return data  # the field's own validation names the type
        twice = sorted(set(own) & set(params))
        if twice:
            raise ValueError(
                f"{twice[0]!r} is given beside the common keys and in params; give it once"
            )
        return {
            **{k: v for k, v in data.items() if k in cls.model_fields},
            "params": {**params, **own},
        }


# byzantine -- begin
Attack = Literal[
    "forged_tag",
    "replayed",
    "mutated_resend",
    "unknown_account",
    "huge_amount",
    "forged_delta",
    "overdraft",
    "over_bound",
]
ATTACKS: tuple[Attack, ...] = get_args(Attack)
"""Attack kinds of a byzantine fault (:mod:`runtime.faults.byzantine` says what each injects and
which check refuses it)."""
# byzantine -- end


class FaultConfig(_Strict):
    """A scheduled fault, applied by the kernel at a tick boundary and recorded."""

    at: int = Field(ge=0, le=MAX_TICKS, description="Tick at which the fault starts.")
    kind: Literal["crash", "restart", "degrade", "partition", "heal", "loss_burst", "byzantine"] = (
        Field(
            description="What happens (byzantine: traffic the ledger "
            "must refuse, see runtime.faults.byzantine)."
        )
    )
    population: str | None = Field(
        None, max_length=64, description="crash/restart/degrade: population name."
    )
    fraction: Probability = Field(
        1.0,
        description="crash/restart: fraction of the population, from its first agent; degrade: a "
        "seeded random subset of this size.",
    )
    severity: Probability = Field(
        0.6, description="degrade: probability that a degraded agent's task fails."
    )
    groups: list[list[Annotated[str, Field(max_length=64)]]] = Field(
        [],
        max_length=MAX_REGIONS,
        description="partition: lists of regions that can still reach each other.",
    )
    loss: Probability = Field(0.5, description="loss_burst: message loss during the burst.")
    duration: int | None = Field(
        None,
        ge=1,
        le=MAX_TICKS,
        description="Ticks until the fault is undone (restart/heal/end of burst).",
    )
    # byzantine -- begin
    count: int = Field(
        8,
        ge=1,
        le=1000,
        description="byzantine: items injected (forged, "
        "replayed or altered messages to the replicas, local batches the ledger "
        "must refuse).",
    )
    attacks: list[Attack] = Field(
        list(ATTACKS),
        description="byzantine: the attack kinds each "
        "item draws from, uniformly (default: all of them).",
    )
    # byzantine -- end

    @model_validator(mode="after")
    def _needs(self) -> FaultConfig:
        if self.kind in ("crash", "restart", "degrade") and self.population is None:
            raise ValueError(f"a {self.kind} fault needs 'population'")
        if self.kind == "partition" and len(self.groups) < 2:
            raise ValueError("a partition fault needs 'groups' with at least two lists of regions")
        return self


class ConstitutionBound(_Strict):
    """Closed interval a governed parameter must stay in."""

    min: float | None = Field(
        None, ge=-1e15, le=1e15, description="Lowest allowed value (none: unbounded)."
    )
    max: float | None = Field(
        None, ge=-1e15, le=1e15, description="Highest allowed value (none: unbounded)."
    )


class GovernanceConfig(_Strict):
    """The Neural Autonomous Organisation: who votes, how, and what it may change."""

    members: str = Field(max_length=64, description="Population whose agents can be members.")
    initial_members: int | None = Field(
        None,
        ge=1,
        le=50_000_000,
        description="The first N agents of that population start as members; the rest are "
        "candidates for admission (default: all).",
    )
    member_stake: int = Field(
        10, ge=1, le=MAX_CREDITS, description="Credits each member stakes at tick 0."
    )
    quorum: Probability = Field(
        0.4, description="Fraction of the snapshotted weight that must vote."
    )
    threshold: Probability = Field(
        0.5, description="Fraction of the cast weight that must say yes."
    )
    voting_period: int = Field(
        5,
        ge=2,
        le=MAX_TICKS,
        description="Ticks a proposal stays open (at least 2: members vote from the tick after "
        "it opens).",
    )
    timelock: int = Field(
        2, ge=0, le=MAX_TICKS, description="Ticks between passing and taking effect."
    )
    stake_exponent: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Voting weight = stake^exponent x relevance; < 1 is sub-linear.",
    )
    temperature: float = Field(
        1.0, ge=1e-3, le=1e6, description="Softmax temperature of proposal relevance."
    )
    embedding_dim: int = Field(
        4, ge=1, le=64, description="Size of proposal and expertise embeddings."
    )
    fee_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Governed: fraction of each task payment the worker pays as a fee.",
    )
    slash_fraction: float = Field(
        0.1, ge=0, le=1, description="Governed: fraction of stake a proven cheat loses."
    )
    constitution: dict[str, ConstitutionBound] = Field(
        {}, description="Bounds the critic enforces with z3, by parameter name."
    )


class ProposalConfig(_Strict):
    """A scripted proposal; members vote on it the tick after it opens."""

    at: int = Field(ge=0, le=MAX_TICKS, description="Tick at which it opens.")
    proposer: int = Field(0, ge=0, le=50_000_000, description="Member index of the proposer.")
    kind: Literal["params", "admit", "expel", "treasury"] = Field(
        "params", description="What it does."
    )
    changes: dict[str, float] = Field(
        {}, max_length=64, description="params: parameters and their proposed values."
    )
    target: int = Field(
        0,
        ge=0,
        le=50_000_000,
        description="admit/expel: member index; treasury: member index of the recipient.",
    )
    credits: int = Field(
        0, ge=0, le=MAX_CREDITS, description="treasury: credits paid from the treasury."
    )
    turnout: Probability = Field(1.0, description="Probability each member votes.")
    support: Probability = Field(0.5, description="Probability a voting member says yes.")


class VoteConfig(_Strict):
    """A scripted vote of one member (it replaces that member's drawn vote)."""

    at: int = Field(ge=0, le=MAX_TICKS, description="Tick of the vote.")
    member: int = Field(ge=0, le=50_000_000, description="Member index.")
    proposal: int = Field(
        ge=0, le=100_000, description="Index of the proposal in the [[proposal]] list."
    )
    support: bool = Field(description="Yes or no.")


class StakeEventConfig(_Strict):
    """A member buys stake: credits minted to it and staked at its home replica."""

    at: int = Field(ge=0, le=MAX_TICKS, description="Tick of the purchase.")
    member: int = Field(ge=0, le=50_000_000, description="Member index.")
    credits: int = Field(ge=1, le=MAX_CREDITS, description="Credits bought and staked.")


class CoordinationConfig(_Strict):
    """Kuramoto oscillators on the interaction graph, and tension from its minimum cut."""

    coupling: float = Field(2.0, ge=0, le=1e6, description="Coupling strength K.")
    frequency_spread: float = Field(
        0.5, gt=0, le=1e6, description="Half-width gamma of the Lorentzian natural frequencies."
    )
    dt: float = Field(0.05, gt=0, le=1e3, description="Integration step, virtual time units.")
    steps_per_tick: int = Field(10, ge=1, le=10_000, description="Oscillator steps per tick.")
    graph_every: int = Field(
        10,
        ge=1,
        le=MAX_TICKS,
        description="Ticks between rebuilding the coupling graph from recent interactions.",
    )
    sync_threshold: Probability = Field(
        0.8,
        description="A region whose order parameter rises through this fires an extra "
        "anti-entropy round.",
    )
    close_votes_on_sync: bool = Field(
        False,
        description="Close open proposals early when the members' order parameter rises through "
        "sync_threshold.",
    )
    tension_every: int = Field(
        25, ge=1, le=MAX_TICKS, description="Ticks between tension readings."
    )


class RecordConfig(_Strict):
    """How the run is recorded."""

    flush_seconds: float = Field(
        2.0, gt=0, le=60, description="Most wall-clock seconds between log flushes."
    )
    state: bool = Field(
        True,
        description="Record the state table (balances, stakes, reputations, alive) after every "
        "tick: full at checkpoints, changed rows in between (what `agora replay --at` and `agora "
        "analyze` read).",
    )
    snapshots: Literal["all", "last", "none"] = Field(
        "all",
        description="Save the whole world at checkpoints (checkpoints/world_<tick>.npz: what "
        "`agora run --resume` and `agora fork` start from): at every checkpoint, only the latest "
        "(each replaces the one before), or none.",
    )
    outside_inputs: str | None = Field(
        None,
        max_length=1024,
        description="A served run's outside inputs file (inputs/outside.json, relative to the "
        "scenario): the faults and proposals its operator sent and the stakes and votes of its "
        "seats, each applied at its tick again on replay and resume. `agora serve` writes it; "
        "you do not.",
    )


class DistributedConfig(_Strict):
    """A sharded world: agents partitioned over Ray actors, one ledger replica per region."""

    shards: int = Field(
        1,
        ge=1,
        le=64,
        description="Shards (Ray actors). An agent lives on shard (id % regions) % shards, with "
        "the replicas of its shard's regions; needs at least as many regions as shards.",
    )


class Scenario(_Strict):
    """A whole scenario file."""

    world: WorldConfig = Field(WorldConfig(), description="The run as a whole.")
    network: NetworkConfig = Field(NetworkConfig(), description="Regions and latency.")
    bus: BusConfig = Field(BusConfig(), description="Message bus faults.")
    economy: EconomyConfig = Field(EconomyConfig(), description="Ledger and market.")
    market: MarketConfig = Field(MarketConfig(), description="How the task auction clears.")
    population: list[PopulationConfig] = Field([], description="Agent populations.")
    fault: list[FaultConfig] = Field([], description="Fault schedule.")
    record: RecordConfig = Field(RecordConfig(), description="Recording.")
    governance: GovernanceConfig | None = Field(
        None, description="Stake-weighted voting on live parameters (absent: none)."
    )
    proposal: list[ProposalConfig] = Field(
        [], description="Scripted proposals (needs [governance])."
    )
    vote: list[VoteConfig] = Field([], description="Scripted votes (needs [governance]).")
    stake_event: list[StakeEventConfig] = Field(
        [], description="Scripted stake purchases (needs [governance])."
    )
    coordination: CoordinationConfig | None = Field(
        None, description="Kuramoto coordination and tension (absent: off)."
    )
    distributed: DistributedConfig | None = Field(
        None, description="Run as a sharded world on Ray actors (absent: one process)."
    )


def schema() -> dict[str, object]:
    """JSON Schema of scenario files, for editors."""
    out = Scenario.model_json_schema()
    out["title"] = "Agora scenario"
    return out


def _loc(loc: tuple[object, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _cross_check(scenario: Scenario, base: Path, label: str) -> list[str]:
    """Problems that need the whole file: references between sections and to other files."""
    problems = []
    regions = set(scenario.network.regions)
    if len(regions) != len(scenario.network.regions):
        problems.append(
            f"{label}: network.regions: duplicate region names in {scenario.network.regions}"
        )
    if scenario.network.graph_file is not None:
        problems += check_graph_file(
            scenario.network.graph_file, base, f"{label}: network.graph_file"
        )
    for i, link in enumerate(scenario.network.links):
        for end in (link.a, link.b):
            if end not in regions:
                problems.append(
                    f"{label}: network.links[{i}]: unknown region {end!r}; regions are "
                    f"{sorted(regions)}"
                )
    names = [p.name for p in scenario.population]
    for i, p in enumerate(scenario.population):
        if names.count(p.name) > 1:
            problems.append(f"{label}: population[{i}].name: duplicate population name {p.name!r}")
        problems += check_population(scenario, i, base, label)
    problems += check_faults(scenario, regions, label)
    problems += _check_governance(scenario, names, label)
    if not problems:
        problems += check_size(scenario, base, label)
    if scenario.distributed is not None and scenario.distributed.shards > 1:
        n_regions = len(scenario.network.regions) if scenario.network.graph_file is None else None
        if n_regions is not None and scenario.distributed.shards > n_regions:
            problems.append(
                f"{label}: distributed.shards: {scenario.distributed.shards} shards need at least "
                f"as many regions; network.regions has {n_regions}"
            )
        coordination = scenario.coordination
        if coordination is not None and coordination.close_votes_on_sync:
            problems.append(
                f"{label}: coordination.close_votes_on_sync: not supported in a sharded world "
                "(each shard sees only its own members' phases); set it to false"
            )
    return problems


def check_faults(scenario: Scenario, regions: set[str] | list[str], label: str) -> list[str]:
    """The fault schedule's problems against the scenario's ticks, populations and ``regions``
    (also what ``agora serve``'s operator injects is checked by)."""
    problems: list[str] = []
    names = [p.name for p in scenario.population]
    for i, f in enumerate(scenario.fault):
        if f.at >= scenario.world.ticks:
            problems.append(
                f"{label}: fault[{i}].at: tick {f.at} is past the run's last tick "
                f"{scenario.world.ticks - 1}"
            )
        if f.population is not None and f.population not in names:
            problems.append(
                f"{label}: fault[{i}].population: unknown population {f.population!r}; "
                f"populations are {names}"
            )
        for group in f.groups:
            for region in group:
                if region not in regions:
                    problems.append(
                        f"{label}: fault[{i}].groups: unknown region {region!r}; regions are "
                        f"{sorted(regions)}"
                    )
        problems += _check_byzantine(f, i, label)
    return problems


# byzantine -- begin
def _check_byzantine(f: FaultConfig, i: int, label: str) -> list[str]:
    """Problems of one fault's byzantine fields: only a byzantine fault takes them, it is
    instantaneous, and it names each attack once."""
    where = f"{label}: fault[{i}]"
    if f.kind != "byzantine":
        extra = sorted({"count", "attacks"} & f.model_fields_set)
        return [
            f"{where}.{key}: only a byzantine fault takes {key}; remove it or set "
            f'kind = "byzantine"'
            for key in extra
        ]
    problems = []
    if f.duration is not None:
        problems.append(
            f"{where}.duration: a byzantine fault injects its items at tick {f.at} "
            "and has nothing to undo; remove duration"
        )
    if not f.attacks:
        problems.append(f"{where}.attacks: empty; name at least one of {', '.join(ATTACKS)}")
    repeated = sorted({a for a in f.attacks if f.attacks.count(a) > 1})
    if repeated:
        problems.append(
            f"{where}.attacks: {repeated[0]!r} is listed more than once; name each attack once"
        )
    return problems


# byzantine -- end


BYTES_PER_AGENT = 512  # a generous bound on what one agent holds outside the ledger (arrays, cores)


def check_size(scenario: Scenario, base: Path, label: str) -> list[str]:
    """Refuse, before anything is built, a world that could not fit: memory (every replica holds
    every account: ``accounts × R × (2R + 2) × 8`` bytes, plus the agents' own arrays) against this
    machine's memory, and the credits the scenario can mint against the ledger's counter bound."""
    import os

    from economy.ledger import counter_max
    from runtime.kernel.roles import resolve

    regions = _region_count(scenario, base)
    accounts = sum(p.count for p in scenario.population) + 1
    need = accounts * (regions * ((2 * regions + 2) * 8 + 12) + BYTES_PER_AGENT)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        have = None
    problems = []
    if have and need > 0.8 * have:
        problems.append(
            f"{label}: (size): the world would hold about {need / 2**30:,.1f} GiB ({accounts:,} "
            "accounts x "
            f"{regions} replicas, each replica holding every account); this machine has "
            f"{have / 2**30:,.1f} GiB: use fewer agents or regions"
        )
    minted = sum(
        resolve(p.role, base).cls.credits_minted_at_most(p, scenario) for p in scenario.population
    )
    if scenario.governance is not None:
        members = next(
            (p.count for p in scenario.population if p.name == scenario.governance.members), 0
        )
        minted += members * scenario.governance.member_stake + sum(
            e.credits for e in scenario.stake_event
        )
    bound = counter_max(regions) // 1_000_000 // 2
    if minted > bound:
        problems.append(
            f"{label}: (credits): the scenario can mint up to {minted:,} credits, past the "
            f"{bound:,} a ledger of {regions} replicas holds safely; lower initial_credits, "
            "stakes, uptime rewards or counts"
        )
    return problems


def _region_count(scenario: Scenario, base: Path) -> int:
    if scenario.network.graph_file is None:
        return len(scenario.network.regions)
    import networkx as nx

    return int(nx.read_graphml(base / scenario.network.graph_file).number_of_nodes())


def check_graph_file(ref: str, base: Path, where: str) -> list[str]:
    """A GraphML region graph: inside the scenario's folder, readable, 1..MAX_REGIONS nodes, every
    latency a finite number >= 0."""
    from pathlib import PurePosixPath

    import networkx as nx

    rel = PurePosixPath(ref)
    if rel.is_absolute() or ".." in rel.parts:
        return [
            f"{where}: {ref!r} must lie inside the scenario's folder (a relative path without ..)"
        ]
    path = base / rel
    if path.is_symlink() or not path.is_file():
        return [f"{where}: file not found: {path}"]
    if path.stat().st_size > 16 << 20:
        return [
            f"{where}: {path} is larger than 16 MiB; a region graph holds at most {MAX_REGIONS} "
            "regions"
        ]
    try:
        graph = nx.read_graphml(path)
    except Exception as exc:  # networkx raises several types for malformed XML
        return [f"{where}: {path} is not a readable GraphML graph: {type(exc).__name__}: {exc}"]
    if not 1 <= graph.number_of_nodes() <= MAX_REGIONS:
        return [
            f"{where}: {path} has {graph.number_of_nodes()} regions; a world has 1 to {MAX_REGIONS}"
        ]
    for a, b, data in graph.edges(data=True):
        value = data.get("latency", 0.0)
        try:
            latency = float(value)
        except (TypeError, ValueError):
            return [f"{where}: edge {a}-{b}: latency {value!r} is not a number"]
        if not 0 <= latency <= MAX_TIME:
            return [
                f"{where}: edge {a}-{b}: latency {latency} must be a finite number in [0, "
                f"{MAX_TIME:g}]"
            ]
    return []


def check_population(scenario: Scenario, i: int, base: Path, label: str) -> list[str]:
    """Problems of population ``i``: its role (found and importable), the role's own keys (each
    known, typed and in range, with the nearest key for a typo), its core, and the role's checks
    of the rest of the scenario."""
    from runtime.kernel.roles import resolve

    p = scenario.population[i]
    where = f"{label}: population[{i}]"
    try:
        role = resolve(p.role, base)
    except ScenarioError as exc:
        return [f"{where}.role: {line}" for line in exc.problems]
    try:
        params = role.cls.Params.model_validate(p.params)
    except ValidationError as exc:
        return [_param_problem(where, p, err, role.cls.Params) for err in exc.errors()]
    problems = []
    if p.core is not None and not role.cls.has_core:
        problems.append(f"{where}.core: role {p.role!r} has no core to choose")
    elif p.core not in (None, "baseline", "learned"):
        problems += _check_core_file(p.core, base, role.cls, f"{where}.core")
    return problems + role.cls.check_scenario(scenario, i, params, base, label)


def _param_problem(where: str, p: PopulationConfig, err: Any, model: type[BaseModel]) -> str:
    """One line for one error of a role's keys, naming population, role and key."""
    key = ".".join(str(part) for part in err["loc"]) or "(keys)"
    if err["type"] == "extra_forbidden":
        known = [*model.model_fields, *PopulationConfig.model_fields]
        near = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else "."
        keys = ", ".join(model.model_fields) or "none"
        return (
            f"{where}.{key}: not a key of population {p.name!r} (role {p.role!r}){hint} "
            f"Its own keys: {keys}; every population also takes name, role, count, "
            "initial_credits, core"
        )
    got = f" (got {err['input']!r})" if "input" in err and err["type"] != "missing" else ""
    return f"{where}.{key}: {err['msg']}{got} (population {p.name!r}, role {p.role!r})"


def _check_core_file(ref: str, base: Path, cls: Any, where: str) -> list[str]:
    """A core file a population names: inside the scenario's folder, present, and a core of its
    role."""
    from pathlib import PurePosixPath

    rel = PurePosixPath(ref)
    if rel.is_absolute() or ".." in rel.parts:
        return [
            f"{where}: {ref!r} must lie inside the scenario's folder (a relative path without ..), "
            "so a run can be replayed from its directory"
        ]
    path = base / rel
    if path.is_symlink() or not path.is_file():
        return [f"{where}: core file not found: {path}"]
    problem = cls.check_core_file(path)
    return [] if problem is None else [f"{where}: {problem}"]


GOVERNED = (
    "fee_rate",
    "slash_fraction",
    "price_elasticity",
    "quorum",
    "threshold",
    "voting_period",
    "timelock",
    "stake_exponent",
    "temperature",
)  # what a params proposal may change: [governance] keys, and the economy's price_elasticity


def check_changes(changes: dict[str, float], where: str) -> list[str]:
    """What is wrong with a params proposal's ``changes``: a key that is not governed, or a value
    its scenario key would refuse (a voting period of 1.5 ticks, a negative elasticity)."""
    problems = []
    for key, value in changes.items():
        if key not in GOVERNED:
            problems.append(
                f"{where}.changes.{key}: not a governed parameter; governed are {sorted(GOVERNED)}"
            )
            continue
        model: type[BaseModel] = EconomyConfig if key == "price_elasticity" else GovernanceConfig
        info = model.model_fields[key]
        number: float | int = value
        if info.annotation is int:
            if not float(value).is_integer():
                problems.append(f"{where}.changes.{key}: must be a whole number, not {value}")
                continue
            number = int(value)
        try:
            model.__pydantic_validator__.validate_assignment(model.model_construct(), key, number)
        except ValidationError as exc:
            problems.append(f"{where}.changes.{key}: {exc.errors()[0]['msg']} (got {value})")
    return problems


def check_proposal(p: ProposalConfig, n: int, where: str) -> list[str]:
    """What is wrong with proposal ``p`` among ``n`` members (``where`` names it)."""
    problems = []
    if p.proposer >= n:
        problems.append(
            f"{where}.proposer: member {p.proposer} out of range (there are {n} members)"
        )
    if p.kind != "params" and p.target >= n:
        problems.append(f"{where}.target: member {p.target} out of range (there are {n} members)")
    if (p.kind == "params") != bool(p.changes):
        problems.append(f"{where}.changes: a params proposal needs changes, other kinds take none")
    if (p.kind == "treasury") != (p.credits > 0):
        problems.append(
            f"{where}.credits: a treasury proposal needs credits > 0, other kinds take none"
        )
    return problems + check_changes(p.changes, where)


def _check_governance(scenario: Scenario, names: list[str], label: str) -> list[str]:
    problems = []
    g = scenario.governance
    if g is None:
        for key, items in (
            ("proposal", scenario.proposal),
            ("vote", scenario.vote),
            ("stake_event", scenario.stake_event),
        ):
            if items:
                problems.append(f"{label}: {key}: needs a [governance] table")
        return problems
    if g.members not in names:
        return [
            f"{label}: governance.members: unknown population {g.members!r}; populations are "
            f"{names}"
        ]
    n = next(p.count for p in scenario.population if p.name == g.members)
    if n == 0:
        problems.append(f"{label}: governance.members: population {g.members!r} is empty")
    checked = set(GOVERNED) | {"member_count", "treasury_spend"}
    for key, bound in g.constitution.items():
        if key not in checked:
            problems.append(
                f"{label}: governance.constitution.{key}: not a governed quantity; those are "
                f"{sorted(checked)}"
            )
        elif bound.min is not None and bound.max is not None and bound.min > bound.max:
            problems.append(
                f"{label}: governance.constitution.{key}: min {bound.min} > max {bound.max}"
            )
    if g.initial_members is not None and g.initial_members > n:
        problems.append(
            f"{label}: governance.initial_members: {g.initial_members} is more than the {n} "
            f"agents of {g.members!r}"
        )
    for i, p in enumerate(scenario.proposal):
        problems += [f"{label}: {x}" for x in check_proposal(p, n, f"proposal[{i}]")]
    problems += _check_membership(scenario, n, label)
    for i, v in enumerate(scenario.vote):
        if v.member >= n:
            problems.append(
                f"{label}: vote[{i}].member: member {v.member} out of range (there are {n} members)"
            )
        if v.proposal >= len(scenario.proposal):
            problems.append(
                f"{label}: vote[{i}].proposal: no proposal {v.proposal} (there are "
                f"{len(scenario.proposal)})"
            )
    for i, e in enumerate(scenario.stake_event):
        if e.member >= n:
            problems.append(
                f"{label}: stake_event[{i}].member: member {e.member} out of range (there are {n} "
                "members)"
            )
    return problems


def _check_membership(scenario: Scenario, n: int, label: str) -> list[str]:
    """An ``admit`` of an agent already a member, or an ``expel`` of one that is not, when no
    earlier proposal changed its membership: what the organisation would refuse at opening."""
    g = scenario.governance
    assert g is not None
    first = g.initial_members if g.initial_members is not None else n
    problems = []
    changed_before: dict[int, int] = {}  # target -> tick of its first admit or expel proposal
    for i, p in sorted(enumerate(scenario.proposal), key=lambda ip: (ip[1].at, ip[0])):
        if p.kind not in ("admit", "expel") or not 0 <= p.target < n:
            continue
        earlier = changed_before.get(p.target)
        if earlier is None or earlier >= p.at:
            if p.kind == "admit" and p.target < first:
                problems.append(
                    f"{label}: proposal[{i}].target: member {p.target} is a member from the start "
                    f"(governance.initial_members = {first}); admit a candidate, {first} or more"
                )
            elif p.kind == "expel" and p.target >= first:
                problems.append(
                    f"{label}: proposal[{i}].target: {p.target} is a candidate, not a member "
                    f"(governance.initial_members = {first}); expel a member below {first}"
                )
        changed_before.setdefault(p.target, p.at)
    return problems


def _siblings(loc: tuple[object, ...]) -> list[str]:
    """The keys the table holding ``loc``'s last key accepts (its model's fields)."""
    model: type[BaseModel] = Scenario
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        inner = [
            a
            for a in get_args(field.annotation) or (field.annotation,)
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not inner:
            return []
        model = inner[0]
    return list(model.model_fields)


def parse(text: str, label: str = "<string>", base: Path = Path(".")) -> Scenario:
    """Parse and validate scenario TOML text; raise :class:`ScenarioError` listing every problem."""
    if not text.strip():
        raise ScenarioError(
            [f"{label}: (top level): the file is empty; start from scenarios/marketplace.toml"]
        )
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(
            [
                f"{label}: (file): {len(text):,} characters; a scenario file has at most "
                f"{MAX_FILE_BYTES:,}"
            ]
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{label}: (toml): not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ScenarioError(
            [f"{label}: (toml): nested too deeply (arrays or tables inside each other)"]
        ) from None
    try:
        scenario = Scenario.model_validate(data)
    except RecursionError:
        raise ScenarioError(
            [f"{label}: (toml): nested too deeply (arrays or tables inside each other)"]
        ) from None
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            reason = err["msg"]
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(
                    str(err["loc"][-1]), _siblings(tuple(err["loc"])), n=1
                )
                reason = (
                    f"unknown key; did you mean {near[0]!r}?"
                    if near
                    else "unknown key (check the spelling; `agora schema` lists every key)"
                )
            elif "input" in err and err["type"] not in ("missing",):
                reason = f"{reason} (got {err['input']!r})"
            lines.append(f"{label}: {_loc(tuple(err['loc']))}: {reason}")
        raise ScenarioError(lines) from None
    problems = _cross_check(scenario, base, label)
    if not problems and scenario.world.engine == "gpu":
        from runtime.tensor.world import problems as gpu_problems

        problems = [f"{label}: {line}" for line in gpu_problems(scenario, base)]
    if problems:
        raise ScenarioError(problems)
    return scenario


def load(path: str | Path) -> tuple[Scenario, bytes]:
    """Read and validate a scenario file; return it with the file's bytes (for hashing and
    replay)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError([f"{p}: (file): no such scenario file"])
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ScenarioError(
            [
                f"{p}: (file): {p.stat().st_size:,} bytes; a scenario file has at most "
                f"{MAX_FILE_BYTES:,}"
            ]
        )
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{p}: (file): not UTF-8 text: {exc}"]) from None
    return parse(text, str(p), p.parent), raw


def scenario_hash(raw: bytes) -> str:
    """SHA-256 of a scenario file's bytes."""
    return hashlib.sha256(raw).hexdigest()
