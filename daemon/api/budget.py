"""What uploads may hold at once: body memory shared by all, upload slots per key.

Memory is reserved as bytes arrive, never for what a body only declares: a socket that
says 16 MiB and sends one byte holds one byte, so slow or stalled uploads cannot take the
budget from anyone. Reserving piecemeal could let many half-read uploads share the budget
out and all wait for more; so a piece is granted only while the uploads holding memory
can still all finish one after another (the banker's rule: some upload's remaining bytes
fit in what is free, and when it ends it gives back all it held).
"""

from __future__ import annotations

import asyncio
from collections import Counter


class Reservation:
    """One upload's share: what it may come to in all, and what it holds now."""

    __slots__ = ("held", "most")

    def __init__(self, most: int) -> None:
        self.most = most
        self.held = 0


class MemoryBudget:
    """Bytes of upload bodies this process may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._holders: set[Reservation] = set()
        self._changed = asyncio.Condition()

    def open(self, most: int) -> Reservation:
        """A share for an upload of at most `most` bytes; it holds nothing yet."""
        reservation = Reservation(most)
        self._holders.add(reservation)
        return reservation

    async def grow(self, reservation: Reservation, size: int) -> None:
        """Wait until `size` more bytes may be held, then hold them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._may_grow(reservation, size))
            # No one is woken: a grant never makes another's request safe (it only moves
            # bytes from free to a holder that gives them back when it ends); a close does.
            reservation.held += size
            self.used += size

    async def close(self, reservation: Reservation) -> None:
        """The upload is stored or refused: everything it held is free again."""
        async with self._changed:
            self._holders.discard(reservation)
            self.used -= reservation.held
            reservation.held = 0
            self._changed.notify_all()

    def _may_grow(self, grower: Reservation, size: int) -> bool:
        if self.used == grower.held:
            return True  # alone: an upload larger than the whole budget may still go
        free = self.limit - self.used - size
        if free < 0:
            return False
        # Could every holder still finish, the cheapest remainder first? (For one resource,
        # that order succeeds whenever any order does.)
        remainders = []
        for holder in self._holders:
            held = holder.held + (size if holder is grower else 0)
            remainders.append((max(0, min(holder.most, self.limit) - held), held))
        remainders.sort()
        for needs, held in remainders:
            if needs > free:
                return False
            free += held
        return True


class UploadSlots:
    """Uploads each key is sending at once, bounded: one client's many sockets are its own
    queue, not everyone's."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: Counter[int] = Counter()

    def take(self, key_id: int) -> bool:
        """Take a slot for `key_id`; False when it has `per_key` uploads in progress."""
        if self.per_key > 0 and self._open[key_id] >= self.per_key:
            return False
        self._open[key_id] += 1
        return True

    def give_back(self, key_id: int) -> None:
        self._open[key_id] -= 1
        if self._open[key_id] <= 0:
            del self._open[key_id]
