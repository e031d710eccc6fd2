"""Coordination: Kuramoto oscillators, the interaction graph's tension, and the organisation's
votes."""
