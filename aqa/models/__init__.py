"""Backbones and methods. Each module registers itself in ``aqa.registry``."""
