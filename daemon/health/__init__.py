"""The operators' tools: health checks (`python -m daemon.health`) and the smoke client.

The checks, in the order a reading takes: `facts` (one pipelined read of Redis), `checks`
(the verdict type and the checks that judge those facts), `host` (this host: disk, memory,
cpu, temp files, the api's port, supervisord), `runner` (every requested check, from one
read), `rendering` (the monitoring-plugins text and the CLI). `smoke` stands apart: it
checks a running service over HTTP with the standard library only, so this file imports
nothing.
"""
