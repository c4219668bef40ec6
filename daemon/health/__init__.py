"""The operators' tools: health checks (`python -m daemon.health`) and the smoke client."""
