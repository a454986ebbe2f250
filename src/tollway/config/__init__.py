"""Declarative configuration: ``tollway.yaml`` model, loading, apply and export."""
