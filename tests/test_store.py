"""The job scripts the speed-ups rest on, straight against a real redis-server: TAKE
reads and begins a job in one call, and FINISH carries a short result in its done
message so a waiting api needs no read back; the api's client packs its commands in C
and sends the same bytes."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio.connection import Connection as AsyncConnection
from redis.exceptions import DataError

from daemon.config import Settings
from daemon.connection import connect_async
from daemon.store import (
    DONE_CHANNEL,
    DONE_MESSAGE_TEXT_MAX,
    GROUP,
    STREAM,
    AsyncJobStore,
    JobStore,
    Submitted,
    breaker_key,
    job_key,
    parse_done_message,
    payload_key,
)
from devtools.stack import wait_for
from tests.conftest import queue_job


def test_take_reads_and_begins_the_next_job_in_one_call(store: JobStore) -> None:
    first, second = queue_job(store, payload=b"one"), queue_job(store, payload=b"two")

    delivery, begun = store.take("c-0")

    assert delivery.job_id == first and delivery.family == "pdf"
    assert (begun.verdict, begun.attempts, begun.payload, begun.ext) == ("run", 1, b"one", "pdf")
    record = store.client.hgetall(job_key(first))
    assert record[b"state"] == b"processing" and record[b"consumer"] == b"c-0"
    pending = store.client.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert [p["message_id"].decode() for p in pending] == [delivery.entry_id]
    assert store.take("c-1")[0].job_id == second  # the next one, for the next consumer
    assert store.take("c-0") is None  # nothing left: the caller falls back to a blocking read


def test_take_leaves_a_job_behind_an_open_breaker_waiting_unstarted(store: JobStore) -> None:
    store.client.hset(breaker_key("pdf"), mapping={"state": "open", "opened_at": 9e9})
    job_id = queue_job(store)

    delivery, begun = store.take("c-0")

    assert delivery.job_id == job_id and begun.verdict == "wait" and begun.reopen_at > 9e9
    assert store.client.hget(job_key(job_id), "state") == b"queued"


def test_a_short_result_rides_in_its_done_message_and_a_long_one_does_not(
        store: JobStore) -> None:
    pubsub = store.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(DONE_CHANNEL)
    wait_for(lambda: store.client.pubsub_numsub(DONE_CHANNEL)[0][1] == 1, 5, "the subscription")
    long_text = "x" * (DONE_MESSAGE_TEXT_MAX + 1)
    sent = {}
    for text in ("short é text", long_text):
        queue_job(store)
        delivery, begun = store.take("c-0")
        assert begun.verdict == "run"
        store.finish(delivery, {"state": "done", "chars": len(text), "text": text},
                     outcome="success")
        sent[delivery.job_id] = text

    messages = []
    wait_for(lambda: messages.extend(filter(None, [pubsub.get_message(timeout=0.1)]))
             or len(messages) == 2, 5, "two done messages")
    (short_id, short_job), (long_id, long_job) = (parse_done_message(m["data"])
                                                  for m in messages)
    assert sent[short_id] == "short é text" and long_id in sent
    assert short_job["state"] == "done" and short_job["text"] == "short é text"
    assert short_job["chars"] == 12 and short_job["attempts"] == 1
    assert short_job["id"] == short_id and short_job["finished_at"] > 0
    assert long_job is None  # only the id: the waiter reads the job itself
    pubsub.close()


def test_a_failed_job_rides_in_its_done_message_with_its_error(store: JobStore) -> None:
    pubsub = store.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(DONE_CHANNEL)
    wait_for(lambda: store.client.pubsub_numsub(DONE_CHANNEL)[0][1] == 1, 5, "the subscription")
    queue_job(store)
    delivery, _ = store.take("c-0")
    store.finish(delivery, {"state": "failed", "error_code": "corrupt_document",
                            "error_message": "bad bytes"})

    message = wait_for(lambda: pubsub.get_message(timeout=0.1), 5, "the done message")
    job_id, job = parse_done_message(message["data"])

    assert job_id == delivery.job_id and "text" not in job
    assert job["error"] == {"code": "corrupt_document", "message": "bad bytes"}
    pubsub.close()


def command_calls(store: JobStore) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in store.client.info("commandstats").items()}


def test_finish_and_take_stores_the_result_and_begins_the_next_job_in_one_round_trip(
        store: JobStore) -> None:
    first, second = queue_job(store, payload=b"one"), queue_job(store, payload=b"two")
    third = queue_job(store, payload=b"three")
    delivery, _ = store.take("c-0")
    # FINISH is not loaded yet: it is run again through its Script, the take stands
    _, (delivery, _) = store.finish_and_take(delivery, {"state": "done", "chars": 3,
                                                        "text": "one"}, "c-0")
    assert delivery.job_id == second
    before = command_calls(store)

    settled, taken = store.finish_and_take(delivery, {"state": "done", "chars": 3,
                                                      "text": "two"}, "c-0")

    calls = {name: n - before.get(name, 0) for name, n in command_calls(store).items()}
    assert settled.written and taken is not None
    next_delivery, begun = taken
    assert next_delivery.job_id == third and (begun.verdict, begun.payload) == ("run", b"three")
    assert [store.client.hget(job_key(j), "state") for j in (first, second, third)] == [
        b"done", b"done", b"processing"]
    # both scripts in one pipeline: two EVALSHA and no SCRIPT EXISTS before them
    assert calls.get("evalsha") == 2 and not calls.get("script|exists"), calls
    assert store.take("c-0") is None


def test_finish_and_take_after_redis_lost_its_scripts_still_finishes_and_leaves_the_next(
        store: JobStore) -> None:
    queue_job(store), queue_job(store)
    delivery, _ = store.take("c-0")
    store.client.script_flush()  # as after a restart without the scripts, or a failover

    settled, taken = store.finish_and_take(delivery, {"state": "done", "chars": 1,
                                                      "text": "x"}, "c-0")

    assert settled.written and taken is None  # the next one waits for the next take()
    assert store.client.hget(job_key(delivery.job_id), "state") == b"done"
    assert store.take("c-0") is not None


def test_a_damaged_done_message_falls_back_to_reading_the_job() -> None:
    assert parse_done_message(b"abc\n{not json") == ("abc", None)
    assert parse_done_message(b"abc\n" + orjson.dumps({"text": "no record"})) == ("abc", None)
    assert parse_done_message(b"abc") == ("abc", None)


def test_redis_py_packs_and_parses_with_hiredis_as_installed() -> None:
    # redis-py falls back to its pure-Python serializer and parser without a word when
    # hiredis is missing or too old; that costs about 0.1 ms of CPU per tiny job.
    import redis.connection
    from redis.utils import HIREDIS_AVAILABLE

    client = redis.Redis(unix_socket_path="/nonexistent")
    assert HIREDIS_AVAILABLE
    connection = client.connection_pool.make_connection()
    assert isinstance(connection._command_packer, redis.connection.HiredisRespSerializer)



def test_the_apis_client_sends_each_argument_as_redis_pys_own_packing_would(
        redis_server) -> None:
    # SUBMIT's kinds of argument: text (not ASCII too), bytes, ints, floats as time.time()
    # gives them. The api's client packs them with hiredis; the bytes must be the ones
    # redis-py's own asyncio packing makes, and Redis must store what was given.
    args = ("HSET", "probe", "name", "résumé.pdf", "payload", b"\x00\xff", "size", 1024,
            "at", 1796157379.3079913, "ratio", 0.1)
    client = connect_async(Settings(redis_url=redis_server.url))

    async def run() -> tuple[list[bytes], dict, Exception | None]:
        connection = await client.connection_pool.get_connection()
        try:
            packed = connection.pack_command(*args)
            # An upload's payload is sent as it is, not copied into one packed string.
            big = b"%PDF-" + bytes(100_000)
            assert any(chunk is big for chunk in connection.pack_command("SET", "k", big))
        finally:
            await client.connection_pool.release(connection)
        await client.execute_command(*args)
        stored = await client.hgetall("probe")
        refused = None
        try:
            await client.set("probe:bool", True)  # type: ignore[arg-type]
        except DataError as exc:  # as redis-py says it: Redis has no booleans
            refused = exc
        await client.aclose()
        return packed, stored, refused

    packed, stored, refused = asyncio.run(run())
    assert b"".join(packed) == b"".join(AsyncConnection().pack_command(*args))
    assert stored == {b"name": "résumé.pdf".encode(), b"payload": b"\x00\xff",
                      b"size": b"1024", b"at": b"1796157379.3079913", b"ratio": b"0.1"}
    assert isinstance(refused, DataError)


def test_a_job_script_runs_again_after_its_connection_was_killed_and_redis_forgot_it(
        store: JobStore, redis_server) -> None:
    first = queue_job(store, payload=b"one")
    assert store.take("c-0") is not None  # the pooled connection is open now
    second = queue_job(store, payload=b"two")
    killer = redis_server.client()
    killer.script_flush()
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1

    # One lean round trip: the dead connection is redialled under the client's retry,
    # the lost script loaded again, and the job begun once.
    taken = store.take("c-0")

    assert taken is not None and taken[0].job_id == second and taken[1].payload == b"two"
    assert store.client.hget(job_key(second), "attempts") == b"1"
    assert store.client.hget(job_key(first), "state") == b"processing"
    killer.close()


def test_the_apis_submit_runs_again_after_its_connection_was_killed_and_redis_forgot_it(
        redis_server) -> None:
    settings = Settings(redis_url=redis_server.url)
    client = connect_async(settings)
    store = AsyncJobStore(client, settings)
    killer = redis_server.client()
    record = {"id": "", "state": "queued", "attempts": "0", "ext": "txt", "family": "python",
              "method": "", "created_at": "1"}

    async def run() -> list[Submitted]:
        submitted = [await store.submit(record | {"id": "job-1"}, b"one")]
        killer.script_flush()
        assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
        submitted.append(await store.submit(record | {"id": "job-2"}, b"two"))
        await client.aclose()
        return submitted

    one, two = asyncio.run(run())
    assert one.entry_id and two.entry_id and one.entry_id != two.entry_id
    assert killer.get(payload_key("job-2")) == b"two"
    assert killer.xlen(STREAM) == 2
    killer.close()
