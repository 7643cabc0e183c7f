"""AdaLoRA's rank budget over training: flat, then a cubic decrease, then flat (AdaLoRA §3.3, eq. 12).

    b(t) = b_init                                                       t ≤ t_init
         = ⌊ b_target + (b_init − b_target) · (1 − (t − t_init)/(T − t_final − t_init))³ ⌋
                                                                        t_init < t ≤ T − t_final
         = b_target                                                     t > T − t_final

Masking happens every ΔT steps while the budget falls and at every step of the final phase
(where the pattern is frozen). This is peft's ``RankAllocator.budget_schedule``, with the
exponent as an argument so a notebook can compare the paper's cubic curve with a straight line.
"""

from __future__ import annotations

from ..checks import check_int


def check_schedule(tinit, tfinal, total_step, delta_t=1) -> tuple[int, int, int, int]:
    """The schedule's step counts validated: ``total_step`` ≥ 1 (peft's users forget it),
    ``tinit, tfinal ≥ 0`` with ``tinit < total_step − tfinal`` (a budgeting phase must exist),
    ``delta_t ≥ 1``. ValueError names the parameter."""
    if total_step is None:
        raise ValueError(
            "total_step must be the number of training steps (an int >= 1), got None: "
            "the budget falls from init to target over the steps between tinit and "
            "total_step - tfinal"
        )
    total_step = check_int(total_step, "total_step", 1)
    tinit = check_int(tinit, "tinit", 0)
    tfinal = check_int(tfinal, "tfinal", 0)
    delta_t = check_int(delta_t, "delta_t", 1)
    if tinit >= total_step - tfinal:
        raise ValueError(
            f"tinit must be < total_step - tfinal so that the budget has steps to fall in, "
            f"got tinit={tinit}, tfinal={tfinal}, total_step={total_step}; decrease "
            "tinit/tfinal or increase total_step"
        )
    return tinit, tfinal, total_step, delta_t


def budget_schedule(
    step: int,
    init_budget: int,
    target_budget: int,
    tinit: int,
    tfinal: int,
    total_step: int,
    delta_t: int = 1,
    power: float = 3,
) -> tuple[int, bool]:
    """``(budget, mask_now)`` at ``step``: the total number of kept ranks and whether to mask now.

    Equal to peft's ``RankAllocator.budget_schedule`` for ``power=3`` (the paper's cubic
    schedule, AdaLoRA §3.3); ``power=1`` is a straight line from ``init_budget`` to
    ``target_budget`` (an ablation). ``target_budget ≤ init_budget``.
    """
    tinit, tfinal, total_step, delta_t = check_schedule(tinit, tfinal, total_step, delta_t)
    step = check_int(step, "step", 0)
    init_budget = check_int(init_budget, "init_budget", 0)
    target_budget = check_int(target_budget, "target_budget", 0, init_budget, " (at most init_budget)")
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
        raise ValueError(f"power must be a number > 0 (3 = the paper's cubic schedule), got {power!r}")
    # 1. warm-up: every rank kept, nothing masked
    if step <= tinit:
        return init_budget, False
    # 3. final fine-tuning: the target budget, the pattern re-applied every step
    if step > total_step - tfinal:
        return target_budget, True
    # 2. the budget falls:  b_T + (b_0 − b_T)(1 − (t − t_init)/(T − t_final − t_init))³, integer part
    remaining = 1 - (step - tinit) / (total_step - tfinal - tinit)
    budget = int((init_budget - target_budget) * (remaining**power) + target_budget)
    return budget, step % delta_t == 0
