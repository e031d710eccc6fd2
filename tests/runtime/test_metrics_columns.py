"""The metrics table's columns are fixed by its first row: a column first set later is refused
with a message that names it and says how to set it from tick 0."""

from __future__ import annotations

import pytest

from runtime.record.recorder import MetricsColumnsError, MetricsLog, read_stream


def test_a_column_set_from_tick_0_is_recorded_every_tick(tmp_path):
    log = MetricsLog(tmp_path / "metrics.arrows", flush_seconds=0.0)
    for tick in range(3):
        log.write({"tick": tick, "savers/given_micro": 5 * tick})
    log.close()
    table, complete = read_stream(tmp_path / "metrics.arrows")
    assert complete and table.column("savers/given_micro").to_pylist() == [0, 5, 10]


def test_a_column_first_set_after_tick_0_is_named_with_the_fix(tmp_path):
    log = MetricsLog(tmp_path / "metrics.arrows", flush_seconds=0.0)
    log.write({"tick": 0})
    with pytest.raises(MetricsColumnsError) as caught:
        log.write({"tick": 1, "savers/given_micro": 5})
    message = str(caught.value)
    assert "new ['savers/given_micro']" in message and "missing" not in message
    assert "world.count(name, 0)" in message and "setup()" in message
    with pytest.raises(MetricsColumnsError, match=r"missing \['savers/given_micro'\]"):
        other = MetricsLog(tmp_path / "other.arrows", flush_seconds=0.0)
        other.write({"tick": 0, "savers/given_micro": 0})
        other.write({"tick": 1})
