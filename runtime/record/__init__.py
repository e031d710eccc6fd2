"""Recording: the event log, metrics and state tables, checkpoints, replay, resume and the run
reader."""
