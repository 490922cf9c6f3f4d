"""Deployment numbers: `bench` (speed and memory of a KV-cache decode) and `report` (a validation folder)."""
