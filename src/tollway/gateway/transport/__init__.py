"""Transports: the HTTP/1.1 protocol Tollway runs under uvicorn, its limits and the fast path."""
