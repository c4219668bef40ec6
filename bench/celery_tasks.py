"""The Celery arm's app and its one task: what a Celery user would write for this job.

The document's bytes travel in the task, the worker writes them to a temporary file with
the document's suffix and runs `textract.process` on it, and the text goes back through
the result backend. Broker and backend are one Redis (BENCH_CELERY_REDIS, a
`redis+socket://` URL the arm sets for the worker; the client is an app of its own,
`client_app`).

Imported by `celery -A bench.celery_tasks worker` (bench/celery_arm.py starts it) and by
the benchmark's client; only with the bench extra installed (`pip install -e .[bench]`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import textract
from celery import Celery

REDIS_ENV = "BENCH_CELERY_REDIS"

app = Celery("bench")
app.conf.update(
    broker_url=os.environ.get(REDIS_ENV, ""),
    result_backend=os.environ.get(REDIS_ENV, ""),
    # The bytes as they are: JSON would need them base64'd, which only costs Celery time.
    task_serializer="pickle", result_serializer="pickle", accept_content=["pickle"],
    # The service's delivery guarantee: a job whose worker dies mid-extraction is handed
    # out again rather than lost (Celery's default acknowledges on receipt).
    task_acks_late=True, task_reject_on_worker_lost=True,
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.extract")
def extract(data: bytes, filename: str, kwargs: dict) -> bytes:
    """textract's text of `data`, a document called `filename`, as the service gives it."""
    with tempfile.NamedTemporaryFile(suffix=Path(filename).suffix) as spool:
        spool.write(data)
        spool.flush()
        with warnings.catch_warnings():
            # textract's parsers warn (bs4, openpyxl) on corpus documents: noise in the log.
            warnings.simplefilter("ignore")
            return textract.process(spool.name, **kwargs)


def client_app(url: str) -> Celery:
    """An app that sends `bench.extract` to the worker whose broker and backend are `url`.

    One per arm: an app keeps its broker and backend connections bound to the first URL
    it used, so a second run's arm, with a Redis of its own, needs a new app."""
    client = Celery("bench-client", broker=url, backend=url)
    client.conf.update({key: app.conf[key] for key in (
        "task_serializer", "result_serializer", "accept_content", "result_expires")})
    return client
