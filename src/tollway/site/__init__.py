"""Tollway's own site and composition root: the gateway with ``/docs``, ``/-/`` and ``/portal``."""
