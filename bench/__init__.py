"""The benchmark (`scripts/bench`): not shipped with the service."""
