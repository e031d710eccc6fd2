"""Agora's runtime: the event-loop kernel (SimPy clock, Mesa model), scenarios, recording, replay, CLI."""
