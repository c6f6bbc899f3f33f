"""Drifting Models (Deng et al. 2026): the drifting field, losses and the one-step method."""
