"""Attacks from the security campaign (issue 9), kept as tests; each runs on both transports."""
