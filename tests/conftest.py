"""Hypothesis settings for the whole suite.

The suite runs with one pytest-xdist worker per core beside other work, so how fast Hypothesis
draws an input says more about the machine's load than about the strategy: the too-slow health
check is off everywhere. Every other health check stays on.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("agora", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("agora")
