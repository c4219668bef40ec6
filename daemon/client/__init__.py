"""A Python client for textractd, blocking (`Client`) and asyncio (`AsyncClient`).

    from daemon.client import Client

    with Client() as client:  # TEXTRACTD_URL, TEXTRACTD_API_KEY, else this installation's .env
        print(client.extract("report.pdf"))

It imports httpx and the service's error list only: no aiohttp, no Redis, no textract.
"""

from daemon.client.aio import AsyncClient
from daemon.client.errors import (
                                  AuthenticationFailed,
                                  BadRequest,
                                  ClientError,
                                  Conflict,
                                  ConnectionFailed,
                                  DocumentRejected,
                                  JobFailed,
                                  JobNotFinished,
                                  NotFound,
                                  RateLimited,
                                  ServerError,
                                  ServiceBusy,
                                  family_of,
)
from daemon.client.retry import RetryNotice
from daemon.client.sources import Source
from daemon.client.sync import Client
from daemon.client.target import resolve_target

__all__ = ["AsyncClient", "AuthenticationFailed", "BadRequest", "Client", "ClientError",
           "Conflict", "ConnectionFailed", "DocumentRejected", "JobFailed", "JobNotFinished",
           "NotFound", "RateLimited", "RetryNotice", "ServerError", "ServiceBusy", "Source",
           "family_of", "resolve_target"]
