"""Running the checks: read the facts once, run the host checks, judge in the asked order.

`run_checks` for the CLI (blocking), `run_checks_async` inside the api.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

import redis

from daemon.config import Settings
from daemon.connection import connect
from daemon.health.checks import (
    OK,
    UNKNOWN,
    Check,
    check_breaker,
    check_chores,
    check_queue,
    check_redis,
    check_workers,
)
from daemon.health.facts import Facts, gather, gather_async
from daemon.health.host import (
    CpuReading,
    check_api,
    check_cpu,
    check_disk,
    check_memory,
    check_supervisor,
    check_tempfiles,
    load_reading,
    one_shot_reading,
)

COMPONENTS = ("redis", "workers", "api", "chores", "disk", "memory", "cpu", "tempfiles",
              "queue", "breaker", "supervisor")
# cpu too: the queue's lag decides whether a saturated CPU is news (see host.check_cpu).
NEEDS_REDIS = frozenset({"redis", "workers", "chores", "queue", "breaker", "cpu"})


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except Exception as exc:  # one broken check must not hide the others
        return Check(name, UNKNOWN, f"the check itself failed: {type(exc).__name__}: {exc}")


def _local(name: str, settings: Settings, cpu: CpuReading | None, facts: Facts | None
           ) -> Callable[[], Check]:
    return {
        "api": lambda: check_api(settings),
        "disk": lambda: check_disk(settings),
        "memory": lambda: check_memory(settings),
        "cpu": lambda: check_cpu(settings, cpu or load_reading(), facts),
        "tempfiles": lambda: check_tempfiles(settings),
        "supervisor": lambda: check_supervisor(settings),
    }[name]


REDIS_CHECKS: dict[str, Callable[[Facts, Settings], Check]] = {
    "redis": check_redis, "workers": check_workers, "chores": check_chores,
    "queue": check_queue, "breaker": check_breaker,
}


def _judge_facts(name: str, facts: Facts | None, settings: Settings) -> Check:
    if facts is None:  # a caller's bug: run_checks reads them whenever one of these is asked
        raise ValueError(f"the {name} check needs the facts from Redis")
    return REDIS_CHECKS[name](facts, settings)


def judge(components: list[str], settings: Settings, facts: Facts | None,
          local: dict[str, Check]) -> list[Check]:
    """The checks in `components` order, from facts already read."""
    out = []
    for name in components:
        if name in REDIS_CHECKS:
            out.append(_guarded(name, partial(_judge_facts, name, facts, settings)))
        else:
            out.append(local[name])
    return out


def run_checks(settings: Settings, components: list[str] | None = None) -> list[Check]:
    """Every requested check, blocking (the CLI and healthcheck.sh)."""
    components = list(components or COMPONENTS)
    facts = None
    if NEEDS_REDIS & set(components):
        client = connect(settings, fast_fail=True)
        try:
            facts = gather(client, settings)
        finally:
            client.close()
    # One shot, no history: the load average, or a measured CPU_WINDOW when it is shorter.
    cpu = one_shot_reading(settings) if "cpu" in components else None
    local = {n: _guarded(n, _local(n, settings, cpu, facts)) for n in components
             if n not in REDIS_CHECKS}
    return judge(components, settings, facts, local)


async def run_checks_async(settings: Settings, client: redis.asyncio.Redis,
                           components: list[str], cpu: CpuReading,
                           api: Check | None = None) -> tuple[list[Check], Facts]:
    """The same checks inside the api: Redis through its client, the rest in a thread."""
    facts = await gather_async(client, settings)
    local_names = [n for n in components if n not in REDIS_CHECKS and n != "api"]

    def run_local() -> dict[str, Check]:
        return {n: _guarded(n, _local(n, settings, cpu, facts)) for n in local_names}

    local = await asyncio.to_thread(run_local)
    if "api" in components:
        local["api"] = api or Check("api", OK, "this process answers")
    return judge(components, settings, facts, local), facts
