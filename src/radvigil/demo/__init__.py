"""The closed-loop demo: a scenario that drives the running service as a hospital would."""
