"""The region graph: latency between regions (networkx shortest paths) and partitions."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import numpy.typing as npt

from runtime.kernel.scenario import NetworkConfig, ScenarioError


class Network:
    """Regions ``0..R-1`` with all-pairs latency ``float64[R, R]`` and a partition labelling."""

    def __init__(self, graph: nx.Graph, default_latency: float) -> None:
        self.graph = graph
        self.names: list[str] = list(graph.nodes)
        index = {name: i for i, name in enumerate(self.names)}
        n_regions = len(self.names)
        self.latency: npt.NDArray[np.float64] = np.full(
            (n_regions, n_regions), default_latency, dtype=np.float64
        )
        for src, dists in nx.all_pairs_dijkstra_path_length(graph, weight="latency"):
            for dst, d in dists.items():
                self.latency[index[src], index[dst]] = d
        np.fill_diagonal(self.latency, 0.0)
        self.component = np.zeros(n_regions, dtype=np.int64)

    @classmethod
    def from_config(cls, cfg: NetworkConfig, base: Path) -> Network:
        """Build from the scenario's ``[network]`` table (or its GraphML file)."""
        if cfg.graph_file is not None:
            path = base / cfg.graph_file
            try:
                g = nx.read_graphml(path)
            except Exception as exc:  # networkx raises several types for malformed XML
                raise ScenarioError(
                    [f"{path}: (graph_file): not a readable GraphML graph: {exc}"]
                ) from None
            for _a, _b, data in g.edges(data=True):
                data["latency"] = float(data.get("latency", cfg.default_latency))
            return cls(nx.Graph(g), cfg.default_latency)
        g = nx.Graph()
        g.add_nodes_from(cfg.regions)
        for link in cfg.links:
            g.add_edge(link.a, link.b, latency=link.latency)
        return cls(g, cfg.default_latency)

    @property
    def n_regions(self) -> int:
        """Number of regions."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Region index of ``name``."""
        return self.names.index(name)

    def reachable(self, a: int, b: int) -> bool:
        """Whether regions ``a`` and ``b`` are on the same side of every partition."""
        return bool(self.component[a] == self.component[b])

    def partition(self, groups: list[list[str]]) -> None:
        """Split the regions: each group reaches only itself; unlisted regions form one more
        group."""
        self.component[:] = len(groups)
        for g, names in enumerate(groups):
            for name in names:
                self.component[self.index(name)] = g

    def heal(self) -> None:
        """Remove every partition."""
        self.component[:] = 0
