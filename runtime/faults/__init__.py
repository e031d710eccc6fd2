"""Faults: Byzantine replicas and the seeded fault swarm (agora fuzz) that checks the ledger's
promises."""
