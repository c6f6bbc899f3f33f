"""driftbench: configs, data, sampling, metrics, run records and reports around ``methods``."""
