"""The default marketplace written the way a Mesa 3 user would: one Python object per agent.

The peer of ``benchmarks/marketplace.py``. Same populations in the same proportions, same parameters
(post rate, task units, skills, stakes, cheats, check budget, 30-round double auction, Kuramoto
coupling and steps per tick), and the same per-agent work each tick, done by each agent's own
``step`` through ``AgentSet.do``:

* requesters (and planners, who buy a forecast first) post a task when they can pay for it;
* negotiators each evaluate the shared policy network with their own MicroLoRA adapter (numpy, one
  agent at a time), trade in a continuous double auction against the requesters' ZI-C bids, and
  each takes a REINFORCE step on its adapter;
* each remaining task goes to the best willing worker of its skill with room (score: skill match
  plus the worker's learned bias), who succeeds, fails or cheats and is paid through the ledger;
* live workers earn the uptime reward; prices move with each skill's demand and supply;
* healers update every watched worker's failure and latency EWMAs and alarm on z-scores;
* critics Thompson-sample 10% of the paid results, refund and slash what they judge invalid;
* every agent is an oscillator stepped 10 times a tick against its trading partners of the last
  10 ticks (Kuramoto), and the forecaster keeps a persistence forecast;
* the ledger is three replicas of the project's dict CRDT (``economy.reference_ledger``), each op
  executed at the payer's home replica, merged state-to-state every 5 ticks.

What it leaves out, all of which Agora's tick pays for: tension readings (a spectral minimum cut of
the interaction graph every 25 ticks), the message bus and its latency, signed
ops and causal delivery, Merkle roots, z3 proofs, the refactor agents' codebases and the world
model's torch ensemble (Agora's fixed costs per tick, independent of N), faults, and recording.
Every omission favours this peer, so the ratios in the benchmark understate Agora's lead.
"""

from __future__ import annotations

import math

import mesa
import numpy as np

from agents.auction import ROUNDS
from agents.negotiator_core import ALPHA, HIDDEN
from economy import MICRO
from economy.reference_ledger import DictReplica

N_SKILLS = 8
REGIONS = 3


class Requester(mesa.Agent):
    """Posts a task with probability ``post_rate`` when its home replica holds enough rights."""

    def __init__(self, model: MesaMarketplace, credits: int, planner: bool) -> None:
        super().__init__(model)
        self.planner = planner
        self.home = self.unique_id % REGIONS
        self.model.ledgers[self.home].mint(self.unique_id, credits * MICRO)

    def step(self) -> None:
        m = self.model
        if self.random.random() >= 0.25:
            return
        skill = self.random.randrange(N_SKILLS)
        units = self.random.randint(1, 3)
        price = m.prices[skill] * units
        ledger = m.ledgers[self.home]
        if ledger.rights(self.unique_id) < price:
            return
        if self.planner:  # buy next tick's forecast; wait when it says the price falls
            fee = MICRO // 1000
            if (
                ledger.transfer(self.unique_id, m.forecaster.unique_id, fee)
                and m.forecaster.forecast[skill] * units < price - fee
            ):
                return
        m.board.append((self, skill, units, price))


class Negotiator(mesa.Agent):
    """A contractor with its own adapter on the shared policy network."""

    def __init__(self, model: MesaMarketplace) -> None:
        super().__init__(model)
        self.home = self.unique_id % REGIONS
        self.A = np.zeros((2, 2))
        self.B = model.rng.normal(0, 0.1, size=(2, HIDDEN))
        self.model.ledgers[self.home].mint(self.unique_id, 1000 * MICRO)
        self.cost = 1.0
        self.noise = 0.0
        self.h = np.zeros(HIDDEN)
        self.x = np.zeros(2)
        self.ask = 1.0

    def quote(self) -> None:
        """Draw a cost, evaluate the policy with this agent's adapter, set the opening ask."""
        m = self.model
        self.cost = self.random.uniform(0.5, 1.5)
        self.x = np.array([self.cost - 1.0, -1.0])
        w = m.w1 + ALPHA * self.A @ self.B
        self.h = np.tanh(self.x @ w + m.b1)
        logit = float(self.h @ m.w2 + m.b2)
        self.noise = self.random.gauss(0.0, 0.3)
        shade = 1.0 / (1.0 + math.exp(-(logit + self.noise)))
        self.ask = self.cost * (1.0 + shade)

    def learn(self, profit: float) -> None:
        """REINFORCE on this agent's adapter from its own profit."""
        m = self.model
        g_out = (profit - m.reward_baseline) * self.noise / 0.3
        g_h = g_out * m.w2 * (1.0 - self.h**2)
        g_w = np.outer(self.x, g_h)
        self.A += ALPHA * (g_w @ self.B.T)


class Worker(mesa.Agent):
    """Does the tasks routed to it; is paid by the requester at the requester's home replica."""

    def __init__(self, model: MesaMarketplace, cheater: bool) -> None:
        super().__init__(model)
        r = model.rng
        self.home = self.unique_id % REGIONS
        self.skill = int(r.integers(N_SKILLS))
        self.quality = float(np.clip(r.normal(0.9, 0.05), 0.0, 1.0))
        self.cost = int(MICRO * r.uniform(0.2, 1.5))
        self.speed = float(r.lognormal(np.log(60.0), 0.3))
        self.cheater = cheater
        self.bias = 0.0
        self.alive = True
        self.load = 0
        self.tasks = self.failed = 0
        self.latency = 0.0
        self.heartbeat = True
        ledger = model.ledgers[self.home]
        ledger.mint(self.unique_id, 5 * MICRO)
        ledger.stake(self.unique_id, 5 * MICRO)

    def reset(self) -> None:
        self.load = self.tasks = self.failed = 0
        self.latency = 0.0
        self.heartbeat = self.alive and self.random.random() >= 0.01

    def work(self, requester: Requester, skill: int, units: int, price: int) -> None:
        m = self.model
        p = self.quality if skill == self.skill else self.quality * 0.5
        success = self.random.random() < p
        cheat = self.cheater and self.random.random() < 0.5
        self.tasks += 1
        self.latency += self.speed * self.random.lognormvariate(0.0, 0.2)
        if not (success or cheat):
            self.failed += 1
        elif m.ledgers[requester.home].transfer(requester.unique_id, self.unique_id, price):
            m.results.append((self, requester, price, success and not cheat))
            m.trade(self, requester)
        self.bias += 0.01 * ((1.0 if success else 0.0) - 0.9)

    def earn(self) -> None:
        if self.alive:
            self.model.ledgers[self.home].mint(self.unique_id, 100_000)


class Healer(mesa.Agent):
    """Updates each watched worker's failure and latency EWMAs and alarms on their z-scores."""

    def __init__(self, model: MesaMarketplace, watched: list[Worker]) -> None:
        super().__init__(model)
        self.watched = watched
        self.state = {
            w: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0] for w in watched
        }  # fast t/f, slow t/f, lat, lat mean, lat var

    def step(self) -> None:
        for w in self.watched:
            s = self.state[w]
            s[0] = 0.7 * s[0] + w.tasks
            s[1] = 0.7 * s[1] + w.failed
            p = min(max((s[3] + 1.0) / (s[2] + 10.0), 0.02), 0.98)
            z = (s[1] - s[0] * p) / math.sqrt(s[0] * p * (1 - p)) if s[0] > 0 else 0.0
            if z < 3.0:
                s[2] = 0.97 * s[2] + w.tasks
                s[3] = 0.97 * s[3] + w.failed
            if w.tasks:
                lat = w.latency / w.tasks
                s[4] = 0.7 * s[4] + 0.3 * lat
                d = lat - s[5]
                s[5] += 0.03 * d
                s[6] = 0.97 * (s[6] + 0.03 * d * d)
                if (s[4] - s[5]) / math.sqrt(s[6]) > 3.0 and w.alive:
                    self.model.alarms += 1


class Critic(mesa.Agent):
    """Checks a Thompson sample of this tick's paid results; refunds and slashes what fails."""

    def __init__(self, model: MesaMarketplace) -> None:
        super().__init__(model)
        self.record: dict[Worker, list[float]] = {}

    def step(self) -> None:
        m = self.model
        mine = m.results[self.unique_id % 2 :: 2]  # two critics share the results
        if not mine:
            return
        budget = math.ceil(0.1 * len(mine))
        draws = []
        for i, (w, _, _, _) in enumerate(mine):
            bad, good = self.record.setdefault(w, [0.0, 0.0])
            draws.append((-m.rng.beta(1.0 + bad, 4.0 + good), i))
        draws.sort()
        for _, i in draws[:budget]:
            w, req, price, valid = mine[i]
            judged_invalid = (not valid) if self.random.random() < 0.98 else valid
            self.record[w][0 if judged_invalid else 1] += 1.0
            if judged_invalid:
                m.ledgers[req.home].transfer(w.unique_id, req.unique_id, price)
                ledger = m.ledgers[w.home]
                ledger.slash(w.unique_id, ledger.staked(w.unique_id) // 10)


class Forecaster(mesa.Agent):
    """Persistence forecast of each skill's price."""

    def __init__(self, model: MesaMarketplace) -> None:
        super().__init__(model)
        self.forecast = list(model.prices)

    def step(self) -> None:
        self.forecast = list(self.model.prices)


class MesaMarketplace(mesa.Model):
    """The default marketplace with ``n`` agents in its proportions, an object per agent."""

    def __init__(self, n: int, seed: int = 9) -> None:
        super().__init__(seed=seed)
        f = (
            n - 10
        ) / 2240  # the default scenario's 2,250 agents: 2,240 scale, 10 service agents stay
        self.ledgers = [DictReplica(r, REGIONS) for r in range(REGIONS)]
        self.prices = [MICRO] * N_SKILLS
        self.board: list[tuple[Requester, int, int, int]] = []
        self.results: list[tuple[Worker, Requester, int, bool]] = []
        self.alarms = 0
        self.reward_baseline = 0.0
        r = self.rng
        self.w1 = r.normal(0, 0.5, size=(2, HIDDEN))
        self.b1 = np.zeros(HIDDEN)
        self.w2 = r.normal(0, 0.1, size=HIDDEN)
        self.b2 = -1.0
        self.requesters = [Requester(self, 60, False) for _ in range(round(1600 * f))]
        n_workers = round(400 * f)
        self.workers = [Worker(self, i < n_workers // 10) for i in range(n_workers)]
        self.forecaster = Forecaster(self)
        self.requesters += [Requester(self, 60, True) for _ in range(round(200 * f))]
        self.negotiators = [Negotiator(self) for _ in range(round(40 * f))]
        self.healers = [Healer(self, self.workers[i::3]) for i in range(3)]
        self.critics = [Critic(self) for _ in range(2)]
        self.by_skill = [[w for w in self.workers if w.skill == s] for s in range(N_SKILLS)]
        # Kuramoto: a phase and natural frequency per agent; neighbours from the last 10 ticks of
        # trades.
        everyone = list(self.agents)
        q = (np.arange(1, len(everyone) + 1) - 0.5) / len(everyone)
        omega = 0.1 * np.tan(np.pi * (q - 0.5))
        for a, w in zip(everyone, omega.tolist(), strict=True):
            a.theta, a.omega, a.neighbours, a.recent = r.uniform(0, 2 * math.pi), w, {}, {}
        self.everyone = everyone
        self.tick = 0

    def trade(self, a: mesa.Agent, b: mesa.Agent) -> None:
        a.recent[b] = a.recent.get(b, 0.0) + 1.0
        b.recent[a] = b.recent.get(a, 0.0) + 1.0

    def _auction(self) -> None:
        """Up to one task per negotiator, 30 rounds of a continuous double auction in random
        order."""
        m = min(len(self.board), len(self.negotiators))
        if m == 0:
            return
        picked = self.random.sample(range(len(self.board)), m)
        tasks = [self.board[i] for i in picked]
        for n in self.negotiators:
            n.quote()
        buyers = [(i, self.random.uniform(1.0, 2.0)) for i in range(m)]
        open_b = {i for i in range(m)}
        open_s = set(self.negotiators)
        best_bid: tuple[float, int] | None = None
        best_ask: tuple[float, Negotiator] | None = None
        deals: list[tuple[int, Negotiator, float]] = []
        for rnd in range(ROUNDS):
            concede = 1.0 - rnd / (ROUNDS - 1)
            traders = [("b", i) for i in open_b] + [("s", s) for s in open_s]
            self.random.shuffle(traders)
            for side, who in traders:
                if side == "b" and who in open_b:
                    bid = self.random.random() * buyers[who][1]
                    if best_ask is not None and bid >= best_ask[0]:
                        deals.append((who, best_ask[1], best_ask[0]))
                        open_b.discard(who)
                        open_s.discard(best_ask[1])
                        best_ask = None
                    elif best_bid is None or bid > best_bid[0]:
                        best_bid = (bid, who)
                elif side == "s" and who in open_s:
                    ask = who.cost + (who.ask - who.cost) * concede
                    if best_bid is not None and ask <= best_bid[0] and best_bid[1] in open_b:
                        deals.append((best_bid[1], who, best_bid[0]))
                        open_b.discard(best_bid[1])
                        open_s.discard(who)
                        best_bid = None
                    elif best_ask is None or ask < best_ask[0]:
                        best_ask = (ask, who)
        profit = {n: 0.0 for n in self.negotiators}
        taken = set()
        for i, seller, price in deals:
            req, skill, units, posted = tasks[i]
            amount = int(price * posted)
            if self.ledgers[req.home].transfer(req.unique_id, seller.unique_id, amount):
                profit[seller] = price - seller.cost
                taken.add(picked[i])
                self.trade(seller, req)
        mean = sum(profit.values()) / len(profit)
        self.reward_baseline += 0.05 * (mean - self.reward_baseline)
        for n in self.negotiators:
            n.learn(profit[n])
        self.board = [t for i, t in enumerate(self.board) if i not in taken]

    def _route(self) -> None:
        """Each task to the best willing worker of its skill with room (a sorted list per skill)."""
        live = [w for w in self.workers if w.alive]
        capacity = math.ceil(1.25 * len(self.board) / max(1, len(live)))
        queues = [
            sorted((w for w in ws if w.alive and self.prices[s] >= w.cost), key=lambda w: -w.bias)
            for s, ws in enumerate(self.by_skill)
        ]
        heads = [0] * N_SKILLS
        demand = [0] * N_SKILLS
        served = [0] * N_SKILLS
        for req, skill, units, price in self.board:
            demand[skill] += 1
            q = queues[skill]
            while heads[skill] < len(q) and q[heads[skill]].load >= capacity:
                heads[skill] += 1
            if heads[skill] == len(q):
                continue
            w = q[heads[skill]]
            w.load += 1
            served[skill] += 1
            w.work(req, skill, units, price)
        for s in range(N_SKILLS):
            idle = sum(1 for w in queues[s] if w.load == 0)
            d, sup = demand[s], served[s] + idle
            pressure = (d - sup) / max(d + sup, 1)
            factor = min(max(math.exp(0.5 * pressure), 0.95), 1.05)
            self.prices[s] = max(int(round(self.prices[s] * factor)), 1)

    def _kuramoto(self) -> None:
        if self.tick % 10 == 0:
            for a in self.everyone:
                a.neighbours, a.recent = a.recent, {}
        for _ in range(10):
            for a in self.everyone:
                if a.neighbours:
                    s = sum(w * math.sin(b.theta - a.theta) for b, w in a.neighbours.items())
                    a.next = a.theta + 0.05 * (a.omega + 6.0 * s / sum(a.neighbours.values()))
                else:
                    a.next = a.theta + 0.05 * a.omega
            for a in self.everyone:
                a.theta = a.next % (2 * math.pi)

    def step(self) -> None:
        self.board = []
        self.results = []
        for w in self.workers:
            w.reset()
        self.agents_by_type[Requester].shuffle_do("step")
        self._auction()
        self._route()
        for w in self.workers:
            w.earn()
        self.agents_by_type[Healer].do("step")
        self.agents_by_type[Critic].do("step")
        self.forecaster.step()
        self._kuramoto()
        if self.tick % 5 == 0:  # anti-entropy: every replica merges every other's state
            for a in self.ledgers:
                for b in self.ledgers:
                    if a is not b:
                        a.merge(b)
        self.tick += 1

    def credits(self) -> int:
        """Credits held at the home replicas (balance plus stake), for a conservation check."""
        return sum(
            self.ledgers[a.unique_id % REGIONS].balance(a.unique_id)
            + self.ledgers[a.unique_id % REGIONS].staked(a.unique_id)
            for a in self.everyone
        )
