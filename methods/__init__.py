"""Generative methods (drifting and baselines), backbones and the shared training harness.

This package never imports ``bench``: data flows config -> data -> method -> harness -> bench.
"""
