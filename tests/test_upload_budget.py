"""The upload memory budget's decisions, in-process: bytes reserved as they arrive, and a
grant only while every upload holding memory can still finish (no deadlock)."""

from __future__ import annotations

import asyncio
import random

from daemon.api.budget import MemoryBudget, UploadSlots


def run(coroutine) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, 10))


async def granted_now(budget: MemoryBudget, share, size: int) -> bool:
    """Whether `size` more bytes are granted without waiting."""
    try:
        await asyncio.wait_for(budget.grow(share, size), 0.05)
    except TimeoutError:
        return False
    return True


def test_an_upload_that_declares_much_and_sends_little_holds_only_what_it_sent() -> None:
    async def scenario() -> tuple[int, bool]:
        budget = MemoryBudget(128)
        stalled = [budget.open(100) for _ in range(9)]  # 900 declared, 9 times the budget
        for share in stalled:
            await budget.grow(share, 1)
        other = budget.open(60)
        return budget.used, await granted_now(budget, other, 60)

    used, other_granted = run(scenario())
    assert used == 9
    assert other_granted


def test_a_grant_that_would_leave_no_upload_able_to_finish_waits_until_one_does() -> None:
    async def scenario() -> list[str]:
        budget = MemoryBudget(10)
        a, b = budget.open(6), budget.open(6)
        await budget.grow(a, 5)
        await budget.grow(b, 4)  # free 1: a can still finish
        order: list[str] = []

        async def b_grows() -> None:
            await budget.grow(b, 1)  # free 0, a and b each still need 1: must wait
            order.append("b granted")

        waiting = asyncio.create_task(b_grows())
        await asyncio.sleep(0.05)
        order.append("a finishes")
        await budget.grow(a, 1)
        await budget.close(a)
        await waiting
        return order

    assert run(scenario()) == ["a finishes", "b granted"]


def test_uploads_four_times_the_budget_all_finish_and_never_hold_more_than_it() -> None:
    async def scenario() -> tuple[int, int]:
        budget = MemoryBudget(64)
        peak = 0
        finished = 0

        async def upload(size: int) -> None:
            nonlocal peak, finished
            share = budget.open(size)
            received = 0
            while received < size:
                piece = min(random.randint(1, 8), size - received)
                await budget.grow(share, piece)
                received += piece
                peak = max(peak, budget.used)
                await asyncio.sleep(0)  # the next piece comes later, interleaved with others
            await budget.close(share)
            finished += 1

        random.seed(13)
        await asyncio.gather(*(upload(random.randint(16, 64)) for _ in range(16)))
        return finished, peak

    finished, peak = run(scenario())
    assert finished == 16
    assert peak <= 64


def test_an_upload_larger_than_the_whole_budget_may_still_go_alone() -> None:
    async def scenario() -> bool:
        budget = MemoryBudget(4)
        share = budget.open(10)
        return await granted_now(budget, share, 10)

    assert run(scenario())


def test_a_key_gets_its_slots_and_the_next_upload_of_that_key_only_is_turned_away() -> None:
    slots = UploadSlots(2)
    assert slots.take(1) and slots.take(1)
    assert not slots.take(1)
    assert slots.take(2)
    slots.give_back(1)
    assert slots.take(1)
    assert UploadSlots(0).take(1)  # 0: no bound
