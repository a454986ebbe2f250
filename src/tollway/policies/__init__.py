"""Policies: one module per policy kind, each a config model plus a class built once."""
