"""Scenario files: TOML in, a typed and validated :class:`Scenario` out, or one line per problem.

Every parameter has a default and a description (``agora schema`` prints them as JSON Schema);
unknown keys are errors, so a typo never passes silently. Credits in scenario files are whole
credits; inside the runtime they become int64 micro-credits.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]

CORE_ROLES = ("healer", "critic", "world_model", "refactor", "negotiator")
"""Roles with a learned core and a baseline to compare it with."""


class ScenarioError(Exception):
    """A scenario file that cannot be run; ``problems`` holds one ``file: key: reason`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WorldConfig(_Strict):
    """The run as a whole."""

    name: str = Field("unnamed", description="Scenario name, recorded in the run's summary.")
    seed: int = Field(0, ge=0, description="Seed of every random stream (numpy SeedSequence).")
    ticks: int = Field(100, ge=1, le=10_000_000, description="Ticks to run unless --until says otherwise.")
    tick_length: float = Field(1.0, gt=0, description="Virtual time per tick (one tick = one hour of uptime).")
    checkpoint_every: int = Field(25, ge=1, description="Ticks between state-hash checkpoints.")


class Link(_Strict):
    """An edge of the region graph."""

    a: str = Field(description="Region at one end.")
    b: str = Field(description="Region at the other end.")
    latency: float = Field(0.05, ge=0, description="One-way latency, virtual time units.")


class NetworkConfig(_Strict):
    """Regions (one ledger replica each) and the latency between them."""

    regions: list[str] = Field(["main"], min_length=1, description="Region names; agents are spread over them by account id.")
    links: list[Link] = Field([], description="Edges with latency; regions left unlinked are joined at default_latency.")
    default_latency: float = Field(0.1, ge=0, description="Latency between regions with no explicit path.")
    graph_file: str | None = Field(None, description="GraphML file of the region graph (edge attribute 'latency'); replaces regions/links. Relative to the scenario file.")


class BusConfig(_Strict):
    """The message bus between replicas and agents."""

    loss: Probability = Field(0.0, description="Probability a message is lost.")
    duplication: Probability = Field(0.0, description="Probability a message is delivered twice.")
    jitter: float = Field(0.0, ge=0, description="Extra uniform random delay, virtual time units.")


class EconomyConfig(_Strict):
    """Ledger replication and the market's parameters."""

    anti_entropy_every: int = Field(5, ge=1, description="Ticks between state-sync rounds between replicas.")
    task_unit_credits: int = Field(1, ge=0, description="Credits earned per task unit at the base price.")
    uptime_millicredits_per_hour: int = Field(100, ge=0, description="Uptime reward, milli-credits per hour (0.1 credit).")
    price_elasticity: float = Field(0.5, ge=0, description="How strongly prices follow demand minus supply.")
    price_max_step: Probability = Field(0.05, description="Largest relative price move per tick.")
    network_compute_start: float = Field(0.0, ge=0, description="CPU-hours already in the network (sets the contribution multiplier).")
    n_skills: int = Field(8, ge=1, le=256, description="Number of task skill categories.")
    unbonding_ticks: int = Field(10, ge=0, description="Ticks a stake takes to unbond.")


class PopulationConfig(_Strict):
    """A population of agents of one role, stepped as arrays."""

    name: str = Field(description="Unique population name, used by faults.")
    role: Literal["requester", "worker", "ticker", "exchange", "healer", "critic", "world_model", "refactor", "negotiator"] = Field(description="What the agents do (ticker and exchange: benchmark populations -- a counter, and the Boltzmann wealth exchange).")
    core: str | None = Field(None, description="Roles with a core (healer, critic, world_model, refactor, negotiator): 'learned' (default), 'baseline', or the path of a core file of that role (.npz, written to a run's cores/ folder), relative to the scenario file, which the learned core starts from; `agora run --compare-baseline` reruns with every core at baseline.")
    modules: int = Field(40, ge=2, le=10_000, description="refactor: modules in the simulated codebase.")
    horizon: int = Field(5, ge=1, le=50, description="world_model: the k of its k-step forecasts.")
    core_share: Probability = Field(1.0, description="negotiator with a policy file from `agora train`: the share of contractors (a seeded random subset) that use it; the rest trade as ZI-C in the same auction, and the summary shows both groups' profit.")
    count: int = Field(ge=0, le=50_000_000, description="Number of agents.")
    initial_credits: int = Field(0, ge=0, description="Credits minted to each agent at tick 0.")
    post_rate: Probability = Field(0.2, description="requester: probability of posting a task per tick.")
    task_units: int = Field(1, ge=1, description="requester: most task units per task (uniform 1..task_units).")
    forecasts_from: str | None = Field(None, description="requester: a world_model population to buy next tick's price from before posting; a task is deferred a tick when the forecast says its price falls.")
    forecast_fee: float = Field(0.001, ge=0, description="requester: credits paid per forecast bought.")
    quality: Probability = Field(0.9, description="worker: mean probability of completing a task in its main skill.")
    capacity_factor: float = Field(1.25, gt=0, description="worker: router capacity factor (as in a mixture of experts).")
    stake: int = Field(0, ge=0, description="worker: credits each worker stakes at tick 0 (what a critic can slash).")
    cheat_fraction: Probability = Field(0.0, description="worker: fraction of workers that cheat.")
    cheat_probability: Probability = Field(0.5, description="worker: probability a cheater claims a task done without doing it.")
    watches: str | None = Field(None, description="healer, critic: the worker population it watches.")
    check_budget: Probability = Field(0.1, description="critic: fraction of each tick's results it verifies.")
    review_ledger: bool = Field(True, description="critic: prove every ledger batch with z3 before it executes (at most one critic population may).")
    check_accuracy: Probability = Field(0.98, description="critic: probability a verification judges a result correctly.")
    z_threshold: float = Field(3.0, gt=0, description="healer: EWMA z-score that raises an alarm.")
    ewma_alpha: float = Field(0.3, gt=0, le=1, description="healer: weight of the newest tick in the recent (fast) EWMA; the usual rate uses a tenth of it.")
    confirm_ticks: int = Field(2, ge=1, description="healer: consecutive alarms before it acts.")
    restart_ticks: int = Field(2, ge=1, description="healer: ticks a quarantined agent is down while it restarts.")


# byzantine -- begin
Attack = Literal["forged_tag", "replayed", "mutated_resend", "unknown_account", "huge_amount",
                 "forged_delta", "overdraft", "over_bound"]
ATTACKS: tuple[str, ...] = get_args(Attack)
"""Attack kinds of a byzantine fault (:mod:`runtime.byzantine` says what each injects and which
check refuses it)."""
# byzantine -- end


class FaultConfig(_Strict):
    """A scheduled fault, applied by the kernel at a tick boundary and recorded."""

    at: int = Field(ge=0, description="Tick at which the fault starts.")
    kind: Literal["crash", "restart", "degrade", "partition", "heal", "loss_burst",
                  "byzantine"] = Field(description="What happens (byzantine: traffic the ledger "
                                                   "must refuse, see runtime.byzantine).")
    population: str | None = Field(None, description="crash/restart/degrade: population name.")
    fraction: Probability = Field(1.0, description="crash/restart: fraction of the population, from its first agent; degrade: a seeded random subset of this size.")
    severity: Probability = Field(0.6, description="degrade: probability that a degraded agent's task fails.")
    groups: list[list[str]] = Field([], description="partition: lists of regions that can still reach each other.")
    loss: Probability = Field(0.5, description="loss_burst: message loss during the burst.")
    duration: int | None = Field(None, ge=1, description="Ticks until the fault is undone (restart/heal/end of burst).")
    # byzantine -- begin
    count: int = Field(8, ge=1, le=1000, description="byzantine: items injected (forged, "
                       "replayed or altered messages to the replicas, local batches the ledger "
                       "must refuse).")
    attacks: list[Attack] = Field(list(ATTACKS), description="byzantine: the attack kinds each "
                                  "item draws from, uniformly (default: all of them).")
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

    min: float | None = Field(None, description="Lowest allowed value (none: unbounded).")
    max: float | None = Field(None, description="Highest allowed value (none: unbounded).")


class GovernanceConfig(_Strict):
    """The Neural Autonomous Organisation: who votes, how, and what it may change."""

    members: str = Field(description="Population whose agents can be members.")
    initial_members: int | None = Field(None, ge=1, description="The first N agents of that population start as members; the rest are candidates for admission (default: all).")
    member_stake: int = Field(10, ge=1, description="Credits each member stakes at tick 0.")
    quorum: Probability = Field(0.4, description="Fraction of the snapshotted weight that must vote.")
    threshold: Probability = Field(0.5, description="Fraction of the cast weight that must say yes.")
    voting_period: int = Field(5, ge=1, description="Ticks a proposal stays open.")
    timelock: int = Field(2, ge=0, description="Ticks between passing and taking effect.")
    stake_exponent: float = Field(1.0, gt=0, le=1, description="Voting weight = stake^exponent x relevance; < 1 is sub-linear.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of proposal relevance.")
    embedding_dim: int = Field(4, ge=1, le=64, description="Size of proposal and expertise embeddings.")
    fee_rate: float = Field(0.0, ge=0, le=1, description="Governed: fraction of each task payment the worker pays as a fee.")
    slash_fraction: float = Field(0.1, ge=0, le=1, description="Governed: fraction of stake a proven cheat loses.")
    constitution: dict[str, ConstitutionBound] = Field({}, description="Bounds the critic enforces with z3, by parameter name.")


class ProposalConfig(_Strict):
    """A scripted proposal; members vote on it the tick after it opens."""

    at: int = Field(ge=0, description="Tick at which it opens.")
    proposer: int = Field(0, ge=0, description="Member index of the proposer.")
    kind: Literal["params", "admit", "expel", "treasury"] = Field("params", description="What it does.")
    changes: dict[str, float] = Field({}, description="params: parameters and their proposed values.")
    target: int = Field(0, ge=0, description="admit/expel: member index; treasury: member index of the recipient.")
    credits: int = Field(0, ge=0, description="treasury: credits paid from the treasury.")
    turnout: Probability = Field(1.0, description="Probability each member votes.")
    support: Probability = Field(0.5, description="Probability a voting member says yes.")


class VoteConfig(_Strict):
    """A scripted vote of one member (it replaces that member's drawn vote)."""

    at: int = Field(ge=0, description="Tick of the vote.")
    member: int = Field(ge=0, description="Member index.")
    proposal: int = Field(ge=0, description="Index of the proposal in the [[proposal]] list.")
    support: bool = Field(description="Yes or no.")


class StakeEventConfig(_Strict):
    """A member buys stake: credits minted to it and staked at its home replica."""

    at: int = Field(ge=0, description="Tick of the purchase.")
    member: int = Field(ge=0, description="Member index.")
    credits: int = Field(ge=1, description="Credits bought and staked.")


class CoordinationConfig(_Strict):
    """Kuramoto oscillators on the interaction graph, and tension from its minimum cut."""

    coupling: float = Field(2.0, ge=0, description="Coupling strength K.")
    frequency_spread: float = Field(0.5, gt=0, description="Half-width gamma of the Lorentzian natural frequencies.")
    dt: float = Field(0.05, gt=0, description="Integration step, virtual time units.")
    steps_per_tick: int = Field(10, ge=1, description="Oscillator steps per tick.")
    graph_every: int = Field(10, ge=1, description="Ticks between rebuilding the coupling graph from recent interactions.")
    sync_threshold: Probability = Field(0.8, description="A region whose order parameter rises through this fires an extra anti-entropy round.")
    close_votes_on_sync: bool = Field(False, description="Close open proposals early when the members' order parameter rises through sync_threshold.")
    tension_every: int = Field(25, ge=1, description="Ticks between tension readings.")


class RecordConfig(_Strict):
    """How the run is recorded."""

    flush_seconds: float = Field(2.0, gt=0, le=60, description="Most wall-clock seconds between log flushes.")
    state: bool = Field(True, description="Record the state table (balances, stakes, reputations, alive) after every tick: full at checkpoints, changed rows in between (what `agora replay --at` and `agora analyze` read).")
    snapshots: Literal["all", "last", "none"] = Field("all", description="Save the whole world at checkpoints (checkpoints/world_<tick>.npz: what `agora run --resume` and `agora fork` start from): at every checkpoint, only the latest (each replaces the one before), or none.")


class DistributedConfig(_Strict):
    """A sharded world: agents partitioned over Ray actors, one ledger replica per region."""

    shards: int = Field(1, ge=1, le=64, description="Shards (Ray actors). An agent lives on shard (id % regions) % shards, with the replicas of its shard's regions; needs at least as many regions as shards.")


class Scenario(_Strict):
    """A whole scenario file."""

    world: WorldConfig = Field(WorldConfig(), description="The run as a whole.")
    network: NetworkConfig = Field(NetworkConfig(), description="Regions and latency.")
    bus: BusConfig = Field(BusConfig(), description="Message bus faults.")
    economy: EconomyConfig = Field(EconomyConfig(), description="Ledger and market.")
    population: list[PopulationConfig] = Field([], description="Agent populations.")
    fault: list[FaultConfig] = Field([], description="Fault schedule.")
    record: RecordConfig = Field(RecordConfig(), description="Recording.")
    governance: GovernanceConfig | None = Field(None, description="Stake-weighted voting on live parameters (absent: none).")
    proposal: list[ProposalConfig] = Field([], description="Scripted proposals (needs [governance]).")
    vote: list[VoteConfig] = Field([], description="Scripted votes (needs [governance]).")
    stake_event: list[StakeEventConfig] = Field([], description="Scripted stake purchases (needs [governance]).")
    coordination: CoordinationConfig | None = Field(None, description="Kuramoto coordination and tension (absent: off).")
    distributed: DistributedConfig | None = Field(None, description="Run as a sharded world on Ray actors (absent: one process).")


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


def _cross_check(sc: Scenario, base: Path, label: str) -> list[str]:
    """Problems that need the whole file: references between sections and to other files."""
    problems = []
    regions = set(sc.network.regions)
    if len(regions) != len(sc.network.regions):
        problems.append(f"{label}: network.regions: duplicate region names in {sc.network.regions}")
    if sc.network.graph_file is not None and not (base / sc.network.graph_file).is_file():
        problems.append(f"{label}: network.graph_file: file not found: {base / sc.network.graph_file}")
    for i, link in enumerate(sc.network.links):
        for end in (link.a, link.b):
            if end not in regions:
                problems.append(f"{label}: network.links[{i}]: unknown region {end!r}; regions are {sorted(regions)}")
    names = [p.name for p in sc.population]
    for i, p in enumerate(sc.population):
        if names.count(p.name) > 1:
            problems.append(f"{label}: population[{i}].name: duplicate population name {p.name!r}")
        if p.core is not None and p.role not in CORE_ROLES:
            problems.append(f"{label}: population[{i}].core: role {p.role!r} has no core to choose (roles with one: {', '.join(CORE_ROLES)})")
        elif p.core not in (None, "baseline", "learned"):
            if not (base / p.core).is_file():
                problems.append(f"{label}: population[{i}].core: policy file not found: {base / p.core}")
        if p.role == "critic" and p.review_ledger and sum(q.role == "critic" and q.review_ledger for q in sc.population[:i]):
            problems.append(f"{label}: population[{i}].review_ledger: another critic population already reviews the ledger; set review_ledger = false on one")
        if p.forecasts_from is not None:
            seller = next((q for q in sc.population if q.name == p.forecasts_from), None)
            if p.role != "requester":
                problems.append(f"{label}: population[{i}].forecasts_from: only requesters buy forecasts; this is a {p.role}")
            elif seller is None or seller.role != "world_model":
                problems.append(f"{label}: population[{i}].forecasts_from: names no world_model population; got {p.forecasts_from!r}")
        if p.role in ("healer", "critic"):
            watched = next((q for q in sc.population if q.name == p.watches), None)
            if watched is None or watched.role != "worker":
                problems.append(f"{label}: population[{i}].watches: a {p.role} watches a worker population; got {p.watches!r}")
    for i, f in enumerate(sc.fault):
        if f.at >= sc.world.ticks:
            problems.append(f"{label}: fault[{i}].at: tick {f.at} is past the run's last tick {sc.world.ticks - 1}")
        if f.population is not None and f.population not in names:
            problems.append(f"{label}: fault[{i}].population: unknown population {f.population!r}; populations are {names}")
        for group in f.groups:
            for region in group:
                if region not in regions:
                    problems.append(f"{label}: fault[{i}].groups: unknown region {region!r}; regions are {sorted(regions)}")
        problems += _check_byzantine(f, i, label)
    problems += _check_governance(sc, names, label)
    if sc.distributed is not None and sc.distributed.shards > 1:
        n_regions = len(sc.network.regions) if sc.network.graph_file is None else None
        if n_regions is not None and sc.distributed.shards > n_regions:
            problems.append(f"{label}: distributed.shards: {sc.distributed.shards} shards need at least as many regions; network.regions has {n_regions}")
        for key, present in (("governance", sc.governance is not None), ("coordination", sc.coordination is not None)):
            if present:
                problems.append(f"{label}: {key}: not supported in a sharded world yet (distributed.shards > 1); remove one of them")
    return problems


# byzantine -- begin
def _check_byzantine(f: FaultConfig, i: int, label: str) -> list[str]:
    """Problems of one fault's byzantine fields: only a byzantine fault takes them, it is
    instantaneous, and it names each attack once."""
    where = f"{label}: fault[{i}]"
    if f.kind != "byzantine":
        extra = sorted({"count", "attacks"} & f.model_fields_set)
        return [f"{where}.{key}: only a byzantine fault takes {key}; remove it or set "
                f"kind = \"byzantine\"" for key in extra]
    problems = []
    if f.duration is not None:
        problems.append(f"{where}.duration: a byzantine fault injects its items at tick {f.at} "
                        "and has nothing to undo; remove duration")
    if not f.attacks:
        problems.append(f"{where}.attacks: empty; name at least one of {', '.join(ATTACKS)}")
    repeated = sorted({a for a in f.attacks if f.attacks.count(a) > 1})
    if repeated:
        problems.append(f"{where}.attacks: {repeated[0]!r} is listed more than once; name each "
                        "attack once")
    return problems
# byzantine -- end


def _check_governance(sc: Scenario, names: list[str], label: str) -> list[str]:
    problems = []
    g = sc.governance
    if g is None:
        for key, items in (("proposal", sc.proposal), ("vote", sc.vote), ("stake_event", sc.stake_event)):
            if items:
                problems.append(f"{label}: {key}: needs a [governance] table")
        return problems
    if g.members not in names:
        return [f"{label}: governance.members: unknown population {g.members!r}; populations are {names}"]
    n = next(p.count for p in sc.population if p.name == g.members)
    if n == 0:
        problems.append(f"{label}: governance.members: population {g.members!r} is empty")
    governed = {"fee_rate", "slash_fraction", "price_elasticity", "quorum", "threshold", "voting_period", "timelock",
                "stake_exponent", "temperature"}
    checked = governed | {"member_count", "treasury_spend"}
    for key, bound in g.constitution.items():
        if key not in checked:
            problems.append(f"{label}: governance.constitution.{key}: not a governed quantity; those are {sorted(checked)}")
        elif bound.min is not None and bound.max is not None and bound.min > bound.max:
            problems.append(f"{label}: governance.constitution.{key}: min {bound.min} > max {bound.max}")
    if g.initial_members is not None and g.initial_members > n:
        problems.append(f"{label}: governance.initial_members: {g.initial_members} is more than the {n} agents of {g.members!r}")
    for i, p in enumerate(sc.proposal):
        if p.proposer >= n:
            problems.append(f"{label}: proposal[{i}].proposer: member {p.proposer} out of range (there are {n} members)")
        if p.kind != "params" and p.target >= n:
            problems.append(f"{label}: proposal[{i}].target: member {p.target} out of range (there are {n} members)")
        if (p.kind == "params") != bool(p.changes):
            problems.append(f"{label}: proposal[{i}].changes: a params proposal needs changes, other kinds take none")
        if (p.kind == "treasury") != (p.credits > 0):
            problems.append(f"{label}: proposal[{i}].credits: a treasury proposal needs credits > 0, other kinds take none")
        for key in p.changes:
            if key not in governed:
                problems.append(f"{label}: proposal[{i}].changes.{key}: not a governed parameter; governed are {sorted(governed)}")
    for i, v in enumerate(sc.vote):
        if v.member >= n:
            problems.append(f"{label}: vote[{i}].member: member {v.member} out of range (there are {n} members)")
        if v.proposal >= len(sc.proposal):
            problems.append(f"{label}: vote[{i}].proposal: no proposal {v.proposal} (there are {len(sc.proposal)})")
    for i, e in enumerate(sc.stake_event):
        if e.member >= n:
            problems.append(f"{label}: stake_event[{i}].member: member {e.member} out of range (there are {n} members)")
    return problems


def parse(text: str, label: str = "<string>", base: Path = Path(".")) -> Scenario:
    """Parse and validate scenario TOML text; raise :class:`ScenarioError` listing every problem."""
    if not text.strip():
        raise ScenarioError([f"{label}: (top level): the file is empty; start from scenarios/marketplace.toml"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{label}: (toml): not valid TOML: {exc}"]) from None
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            reason = err["msg"]
            if err["type"] == "extra_forbidden":
                reason = "unknown key (check the spelling; `agora schema` lists every key)"
            elif "input" in err and err["type"] not in ("missing",):
                reason = f"{reason} (got {err['input']!r})"
            lines.append(f"{label}: {_loc(tuple(err['loc']))}: {reason}")
        raise ScenarioError(lines) from None
    problems = _cross_check(sc, base, label)
    if problems:
        raise ScenarioError(problems)
    return sc


def load(path: str | Path) -> tuple[Scenario, bytes]:
    """Read and validate a scenario file; return it with the file's bytes (for hashing and replay)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError([f"{p}: (file): no such scenario file"])
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{p}: (file): not UTF-8 text: {exc}"]) from None
    return parse(text, str(p), p.parent), raw


def scenario_hash(raw: bytes) -> str:
    """SHA-256 of a scenario file's bytes."""
    return hashlib.sha256(raw).hexdigest()
