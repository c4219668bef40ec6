"""The supervisord program `workers`: the pool master and its children (`python -m daemon.pool`)."""
