"""Reliability tests (issue 4): injected faults, restarts, slow and misbehaving clients, bad input, safe defaults."""
