"""Scale-out: parameter sweeps and sharded worlds on Ray."""
