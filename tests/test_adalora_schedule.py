"""minilora.adalora.schedule: the cubic rank budget equals peft's RankAllocator.budget_schedule."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from minilora.adalora import budget_schedule, check_schedule


def peft_schedule(init_budget, target_budget, tinit, tfinal, total_step, delta_t):
    """peft's own budget_schedule method on an allocator holding just the numbers it reads."""
    adalora = pytest.importorskip("peft.tuners.adalora", reason="peft is the reference AdaLoRA")
    alloc = object.__new__(adalora.RankAllocator)
    alloc.peft_config = SimpleNamespace(tinit=tinit, tfinal=tfinal, total_step=total_step, deltaT=delta_t)
    alloc.init_bgt, alloc.target_bgt = init_budget, target_budget
    return alloc.budget_schedule


GRID = [
    g
    for g in itertools.product((12, 72, 144), (0, 8, 48), (0, 3, 10), (0, 5), (20, 57, 200), (1, 3, 10))
    if g[1] <= g[0] and g[2] < g[4] - g[3]
]


@pytest.mark.parametrize("init_budget,target_budget,tinit,tfinal,total_step,delta_t", GRID)
def test_budget_schedule_equals_peft_at_every_step(
    init_budget, target_budget, tinit, tfinal, total_step, delta_t
):
    theirs = peft_schedule(init_budget, target_budget, tinit, tfinal, total_step, delta_t)
    ours = [
        budget_schedule(t, init_budget, target_budget, tinit, tfinal, total_step, delta_t)
        for t in range(total_step + 3)
    ]
    assert ours == [theirs(t) for t in range(total_step + 3)]


def test_budget_falls_monotonically_from_init_to_target():
    budgets = [budget_schedule(t, 144, 48, 10, 20, 200)[0] for t in range(201)]
    assert budgets[0] == 144 and budgets[-1] == 48
    assert all(a >= b for a, b in zip(budgets, budgets[1:]))


def test_linear_schedule_is_above_the_cubic_one_midway():
    # the cubic curve drops fast early: at the middle of the budgeting phase it is lower
    cubic = budget_schedule(100, 144, 48, 0, 0, 200, power=3)[0]
    linear = budget_schedule(100, 144, 48, 0, 0, 200, power=1)[0]
    assert linear == 96 and cubic == 60


def test_no_mask_during_warmup_mask_every_delta_t_then_every_step():
    masks = [budget_schedule(t, 12, 4, 5, 5, 30, 4)[1] for t in range(31)]
    assert not any(masks[:6])
    assert [t for t in range(6, 26) if masks[t]] == [8, 12, 16, 20, 24]
    assert all(masks[26:])


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(total_step=None), "total_step"),
        (dict(total_step=0), "total_step"),
        (dict(tinit=10, tfinal=10, total_step=20), "tinit"),
        (dict(tinit=-1), "tinit"),
        (dict(delta_t=0), "delta_t"),
    ],
)
def test_bad_schedules_raise_naming_the_parameter(kwargs, name):
    args = dict(tinit=0, tfinal=0, total_step=10, delta_t=1) | kwargs
    with pytest.raises(ValueError, match=name):
        check_schedule(**args)


def test_target_above_init_budget_is_refused():
    with pytest.raises(ValueError, match="target_budget"):
        budget_schedule(1, 10, 11, 0, 0, 10)
