"""The task auction's rounds on a CUDA GPU as Triton kernels: the same integers as
:func:`runtime.tensor.world.auction_rounds`' torch form, in four kernels a round instead of some
thirty-five.

Each round, for the buyers and for the sellers, in the order of the round's posts (sorted once,
before the rounds, as the torch form does):

1. ``_count``: each block of ``BLOCK`` posts counts its traders still in the market;
2. ``_pack``: each block adds the counts of the blocks before it to a running count of its own and
   writes its traders' posts and indices to their packed places (and the "no post" value to the
   places past the last trader);
3. ``_cross``: the number ``k`` of packed pairs whose bid reaches the ask, summed over blocks with
   an integer atomic add (a sum of integers: the same whatever the blocks' order);
4. ``_trade``: the first ``k`` pairs trade, at the middle of the range of prices that clears
   exactly them.

Every value is an integer and every write goes to a place of its own, so the outcome does not
depend on the order the GPU runs the blocks in. Shapes are fixed and nothing is read back to the
host: the rounds can be captured in a CUDA graph.
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl

BLOCK = 1024
NO_ASK = 1 << 40  # a place past the last seller: no ask
NO_BID = -1  # a place past the last buyer: no bid


@triton.jit
def _count(order_ptr, open_ptr, counts_ptr, m, BLOCK: tl.constexpr):
    p = tl.program_id(0)
    at = p * BLOCK + tl.arange(0, BLOCK)
    inside = at < m
    who = tl.load(order_ptr + at, mask=inside, other=0)
    still = tl.load(open_ptr + who, mask=inside, other=0)
    tl.store(counts_ptr + p, tl.sum(still.to(tl.int64), axis=0))


@triton.jit
def _pack(
    order_ptr,
    post_ptr,
    open_ptr,
    counts_ptr,
    packed_ptr,
    packed_who_ptr,
    m,
    n,
    blocks,
    none,
    BLOCK: tl.constexpr,
    BLOCKS: tl.constexpr,
):
    p = tl.program_id(0)
    b = tl.arange(0, BLOCKS)
    counts = tl.load(counts_ptr + b, mask=b < blocks, other=0)
    before = tl.sum(tl.where(b < p, counts, 0), axis=0)
    total = tl.sum(counts, axis=0)
    at = p * BLOCK + tl.arange(0, BLOCK)
    inside = at < m
    who = tl.load(order_ptr + at, mask=inside, other=0)
    still = tl.load(open_ptr + who, mask=inside, other=0).to(tl.int64)
    place = before + tl.cumsum(still, axis=0) - 1
    write = inside & (still != 0) & (place <= n)
    post = tl.load(post_ptr + at, mask=inside, other=0)
    tl.store(packed_ptr + place, post, mask=write)
    tl.store(packed_who_ptr + place, who, mask=write)
    # The places from the last trader to n hold "no post" (place n, when no block reaches it, was
    # set when the array was made, and no trader's place reaches it then).
    empty = (at >= total) & (at <= n)
    tl.store(packed_ptr + at, tl.zeros_like(post) + none, mask=empty)


@triton.jit
def _cross(bid_ptr, ask_ptr, k_ptr, n, BLOCK: tl.constexpr):
    at = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = at < n
    bid = tl.load(bid_ptr + at, mask=inside, other=0)
    ask = tl.load(ask_ptr + at, mask=inside, other=0)
    tl.atomic_add(k_ptr, tl.sum((inside & (bid >= ask)).to(tl.int64), axis=0))


@triton.jit
def _trade(
    bid_ptr,
    ask_ptr,
    buyer_ptr,
    seller_ptr,
    k_ptr,
    open_b_ptr,
    open_s_ptr,
    partner_ptr,
    price_ptr,
    n,
    BLOCK: tl.constexpr,
):
    k = tl.load(k_ptr)
    km1 = tl.maximum(k - 1, 0)
    b_k = tl.load(bid_ptr + k)
    b_km1 = tl.load(bid_ptr + km1)
    a_k = tl.load(ask_ptr + k)
    a_km1 = tl.load(ask_ptr + km1)
    # When k >= 1 both halves are >= 0, so this division truncates as the torch form floors.
    price = (tl.maximum(a_km1, b_k) + tl.minimum(b_km1, a_k)) // 2
    at = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pair = (at < n) & (at < k)
    buyer = tl.load(buyer_ptr + at, mask=pair, other=0)
    seller = tl.load(seller_ptr + at, mask=pair, other=0)
    zero = tl.zeros_like(buyer).to(tl.int8)
    tl.store(open_b_ptr + buyer, zero, mask=pair)
    tl.store(open_s_ptr + seller, zero, mask=pair)
    tl.store(partner_ptr + buyer, seller, mask=pair)
    tl.store(price_ptr + buyer, tl.zeros_like(buyer) + price, mask=pair)


def auction_rounds_cuda(
    bids: Any, asks: Any, active_b: Any, alive_s: Any, post_max: int | None = None
) -> tuple[Any, Any, Any, Any]:
    """:func:`runtime.tensor.world.auction_rounds` on a CUDA device (same arguments, same
    results)."""
    import torch

    rounds, mb = bids.shape
    ns = asks.shape[1]
    on = bids.device
    n = min(mb, ns)
    from runtime.tensor.world import sorted_posts

    b_sorted, b_order, a_sorted, a_order = sorted_posts(bids, asks, post_max)
    b_sorted, a_sorted = b_sorted.contiguous(), a_sorted.contiguous()
    b_order, a_order = b_order.contiguous(), a_order.contiguous()
    open_b = active_b.to(torch.int8)
    open_s = alive_s.to(torch.int8)
    partner = torch.zeros(mb, dtype=torch.int64, device=on)
    price = torch.zeros(mb, dtype=torch.int64, device=on)
    # Packed posts and their traders, n + 1 places (the price reads place k <= n).
    cb = torch.full((n + 1,), NO_BID, dtype=torch.int64, device=on)
    ca = torch.full((n + 1,), NO_ASK, dtype=torch.int64, device=on)
    cbi = torch.zeros(n + 1, dtype=torch.int64, device=on)
    cai = torch.zeros(n + 1, dtype=torch.int64, device=on)
    gb, ga, gn = triton.cdiv(mb, BLOCK), triton.cdiv(ns, BLOCK), triton.cdiv(n, BLOCK)
    counts_b = torch.zeros(gb, dtype=torch.int64, device=on)
    counts_a = torch.zeros(ga, dtype=torch.int64, device=on)
    k = torch.zeros(1, dtype=torch.int64, device=on)
    bb = triton.next_power_of_2(gb)
    ba = triton.next_power_of_2(ga)
    for r in range(rounds):
        _count[(gb,)](b_order[r], open_b, counts_b, mb, BLOCK=BLOCK)
        _count[(ga,)](a_order[r], open_s, counts_a, ns, BLOCK=BLOCK)
        _pack[(gb,)](
            b_order[r], b_sorted[r], open_b, counts_b, cb, cbi, mb, n, gb, NO_BID,
            BLOCK=BLOCK, BLOCKS=bb,
        )  # fmt: skip
        _pack[(ga,)](
            a_order[r], a_sorted[r], open_s, counts_a, ca, cai, ns, n, ga, NO_ASK,
            BLOCK=BLOCK, BLOCKS=ba,
        )  # fmt: skip
        k.zero_()
        _cross[(gn,)](cb, ca, k, n, BLOCK=BLOCK)
        _trade[(gn,)](cb, ca, cbi, cai, k, open_b, open_s, partner, price, n, BLOCK=BLOCK)
    traded_b = active_b & (open_b == 0)
    traded_s = alive_s & (open_s == 0)
    return traded_b, traded_s, partner, price


def traffic(rounds: int, mb: int, ns: int) -> int:
    """Bytes the kernels of :func:`auction_rounds_cuda` load and store over ``rounds`` rounds of
    ``mb`` buyers and ``ns`` sellers, counted as if every trader stayed in the market and every
    pair traded (what depends on the posts is counted at its most): an upper bound, for
    ``agora bench``'s count of a tick's memory traffic (Triton kernels are not torch operations,
    which the bench counts one by one)."""
    n = min(mb, ns)
    per_round = 0
    for m in (mb, ns):
        blocks = triton.cdiv(m, BLOCK)
        per_round += 8 * m + m + 8 * blocks  # _count: order, open flags, the block's count
        # _pack: counts, order, open flags and posts; packed posts and traders, "no post" places
        per_round += 8 * blocks * blocks + 8 * m + m + 8 * m + 16 * min(m, n + 1) + 8 * (n + 1)
    per_round += 8  # k set to 0
    per_round += 16 * n + 8 * triton.cdiv(n, BLOCK)  # _cross: packed pairs, one atomic a block
    per_round += 32 + 16 * n + 2 * n + 16 * n  # _trade: the price's 4 posts; pairs; flags; out
    return rounds * per_round
