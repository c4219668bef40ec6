"""The supervisord program `api`: the HTTP front (`python -m daemon.api`)."""
