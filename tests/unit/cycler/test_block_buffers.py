"""Pooled receive buffers: handed out again only once nothing refers to them."""

from __future__ import annotations

import numpy as np

from voltloop.drivers.block_buffers import POOLED_BYTES, BlockBuffers


def test_small_blocks_get_fresh_bytearrays() -> None:
    pool = BlockBuffers()
    a, b = pool.take(100), pool.take(100)
    assert isinstance(a, bytearray) and len(a) == 100 and a is not b


def test_a_buffer_is_reused_only_when_nothing_holds_it() -> None:
    pool = BlockBuffers()
    n = 2 * POOLED_BYTES
    first = pool.take(n)
    rows = np.frombuffer(first, dtype=np.int64)  # what the cycler driver does
    del first
    second = pool.take(n)  # rows still alive: a new buffer
    assert pool.reused == 0 and not np.shares_memory(rows, np.frombuffer(second, np.uint8))
    part = rows[10:20]  # a slice keeps it too
    del rows
    third = pool.take(n)
    assert pool.reused == 0 and not np.shares_memory(part, np.frombuffer(third, np.uint8))
    del part
    fourth = pool.take(n - 1000)  # the first buffer is free: reused, exactly n - 1000 bytes
    assert pool.reused == 1 and len(fourth) == n - 1000


def test_a_much_larger_buffer_is_not_pinned_by_a_small_block() -> None:
    pool = BlockBuffers()
    pool.take(8 * POOLED_BYTES)  # dropped at once
    pool.take(POOLED_BYTES)
    assert pool.reused == 0


def test_transports_share_the_process_pool() -> None:
    from voltloop.drivers.block_buffers import SHARED
    from voltloop.drivers.transport import Transport

    one, two = Transport("socket://127.0.0.1:1"), Transport("socket://127.0.0.1:2")
    assert one._blocks is SHARED and two._blocks is SHARED


def test_at_most_keep_buffers_are_kept() -> None:
    pool = BlockBuffers(keep=2)
    held = [pool.take(POOLED_BYTES) for _ in range(4)]
    assert len(pool._pool) == 2 and len(held) == 4
