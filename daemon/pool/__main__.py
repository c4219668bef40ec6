"""`python -m daemon.pool`: the pool of extraction workers (supervisord's program "workers")."""

from daemon.cli.program import parse_command_line

SETTINGS = ("REDIS_URL", "WORKER_PROCESSES", "WORKER_MAX_MEMORY_MB", "WORKER_HARD_MEMORY_MB",
            "WORKER_MAX_JOBS", "JOB_TIMEOUT", "MAX_ATTEMPTS", "FAST_DOC", "CONSUMER_PREFIX",
            "SHUTDOWN_TIMEOUT", "CIRCUIT_BREAKER_FAILURE_THRESHOLD", "BREAKER_MAX_WAIT")


def run() -> None:
    parse_command_line("python -m daemon.pool",
                       "textractd's workers: a master that forks WORKER_PROCESSES children, "
                       "each taking jobs from Redis and extracting their text with "
                       "textract.", SETTINGS)
    # Imported after the command line is read: --help must not wait for textract to load.
    from daemon.pool.master import main

    main()


run()
