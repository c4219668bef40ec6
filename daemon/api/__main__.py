"""`python -m daemon.api`: the HTTP api (supervisord's program "api")."""

from daemon.cli.program import parse_command_line

SETTINGS = ("API_KEY", "ADMIN_API_KEY", "ALLOW_NO_AUTH", "HOST", "PORT", "REDIS_URL",
            "MAX_CONTENT_LENGTH", "UPLOAD_MEMORY_MB", "UPLOAD_TIMEOUT", "UPLOAD_MIN_RATE_KB",
            "UPLOAD_RATE_WINDOW", "MAX_UPLOADS_PER_KEY", "MAX_QUEUE_DEPTH",
            "RATE_LIMIT_PER_MINUTE", "MAX_WAIT", "EXTRACT_WAIT", "SHUTDOWN_TIMEOUT")


def run() -> None:
    parse_command_line("python -m daemon.api",
                       "textractd's HTTP api: takes uploads, queues them as jobs in Redis, "
                       "and answers with their text once the workers have it.", SETTINGS)
    # Imported after the command line is read: --help needs no aiohttp, no event loop.
    from daemon.api.app import main

    main()


run()
