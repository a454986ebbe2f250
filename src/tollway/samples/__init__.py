"""Sample backends: small APIs to put behind the gateway in demos, tests and benchmarks."""
