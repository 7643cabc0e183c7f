"""minilora.quant.codes: nearest-level codes (ties down) and two codes per byte."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilora.quant import (
    fp4_levels,
    int4_levels,
    nearest_codes,
    nf4_levels,
    normal_float_levels,
    pack_nibbles,
    unpack_nibbles,
)

TABLES = {"nf4": nf4_levels(), "fp4": fp4_levels(), "int4": int4_levels(), "nf3": normal_float_levels(3),
          "nf5": normal_float_levels(5)}


def test_nearest_level_ties_go_down():
    levels = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    x = torch.tensor([0.25, 0.75, -0.5, 0.2500001, 1.0, -1.0])
    assert nearest_codes(x, levels).tolist() == [1, 2, 0, 2, 3, 0]


def test_codes_are_nearest_level_brute_force():
    torch.manual_seed(1)
    for levels in TABLES.values():
        x = torch.rand(20000) * 2 - 1
        codes = nearest_codes(x, levels)
        dist = (x[:, None] - levels[None, :]).abs()
        chosen = dist.gather(1, codes[:, None]).squeeze(1)
        assert torch.all(chosen <= dist.min(1).values + 1e-7)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 600))
def test_packing_puts_two_codes_in_a_byte(n):
    packed = pack_nibbles(torch.randint(0, 16, (n,), dtype=torch.uint8))
    assert packed.numel() == (n + 1) // 2 and packed.dtype == torch.uint8


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 600))
def test_pack_unpack_round_trip_every_size(n):
    codes = torch.randint(0, 16, (n,), dtype=torch.uint8)
    assert torch.equal(unpack_nibbles(pack_nibbles(codes), n), codes)
