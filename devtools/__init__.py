"""What the tests, the benchmark and the scripts share: not shipped with the service."""
