"""The kernel: the World and its clock, the bus and network, the population API, the scenario
schema,
the role registry, seeded streams and errors."""
