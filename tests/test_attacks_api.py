"""Attacks on the api's front door by a client holding a valid key (issue 13, api part).

Each test attacks a running stack over real sockets the way the report did, and checks
what the attacker gets and what every other client keeps: no version banner, no second
request smuggled on an HTTP/1.0 connection, no false Redis alarm from a client that hangs
up, and uploads of one key that cannot stall another key's.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from devtools.stack import Stack
from tests.client import Client
from tests.test_hostile import raw_request

pytestmark = pytest.mark.slow

FOX = b"the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def front() -> Iterator[Stack]:
    """The api alone (no workers): these attacks never reach a worker."""
    stack = Stack(workers=False).start()
    yield stack
    stack.stop()
    shutil.rmtree(stack.root, ignore_errors=True)


# --- 13.6: no version banner ------------------------------------------------------------------
def test_no_answer_names_python_or_aiohttp_or_their_versions(front: Stack) -> None:
    client = Client(front)
    answers = {
        "a success": client.request("GET", "/v1/formats"),
        "an open route": Client(front, key=None).request("GET", "/health"),
        "an api error": Client(front, key="wrong").request("GET", "/v1/formats"),
        "an unknown route": client.request("GET", "/no/such/route"),
        # Answered by aiohttp's own parser, before any middleware runs.
        "a parser error": raw_request(front.port, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                                  b"Bad Header\r\n\r\n"),
    }
    for what, reply in answers.items():
        assert reply.headers.get("server") == "textractd", (what, reply.headers)
        head = " ".join(f"{k}: {v}" for k, v in reply.headers.items()).lower()
        assert "python" not in head and "aiohttp" not in head, (what, head)
    assert answers["a parser error"].status == 400
