"""minilora.adamw: AdamW against torch.optim.AdamW (updates, state format, closures, schedulers),
its argument checks and state_bytes."""

import copy

import pytest
import torch
from conftest import BAD_HYPERPARAMETERS
from torch import nn

from minilora.adamw import AdamW, check_hyperparameters, state_bytes

HP = dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
MAKERS = {"AdamW": lambda g: AdamW(g, **HP), "loop": lambda g: AdamW(g, foreach=False, **HP),
          "foreach": lambda g: AdamW(g, foreach=True, **HP)}


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("kind", ["mlp", "lora"])
def test_equals_torch_adamw(optim_kit, name, kind):
    k = optim_kit
    make = k.mlp if kind == "mlp" else k.lora_style
    ref, ours = make(), make()
    groups = (lambda m: m.parameters()) if kind == "mlp" else (lambda m: m.groups())
    k.train_steps(ref, torch.optim.AdamW(groups(ref), **HP), 60)
    k.train_steps(ours, MAKERS[name](groups(ours)), 60)
    assert k.max_diff(ref, ours) <= 1e-6
    assert k.max_diff(ref, make()) > 1e-2  # it did train


def late_gradient_run(k):
    """20 steps of torch's AdamW and ours; the first layer gets gradients from step 6 on."""
    ref, ours = k.mlp(), k.mlp()
    opts = [torch.optim.AdamW(ref.parameters(), **HP), AdamW(ours.parameters(), **HP)]
    gen = torch.Generator().manual_seed(3)
    for step in range(20):
        x = torch.randn(8, 12, generator=gen)
        for model, opt in zip((ref, ours), opts):
            model[0].requires_grad_(step >= 5)
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
    return ref, ours, opts[1]


def test_late_gradients_and_frozen_params_match_torch(optim_kit):
    ref, ours, _ = late_gradient_run(optim_kit)
    assert optim_kit.max_diff(ref, ours) <= 1e-6


def test_a_late_parameter_counts_its_own_steps(optim_kit):
    """A parameter that first gets a gradient at step 6 has its own step count, as in torch."""
    _, ours, opt = late_gradient_run(optim_kit)
    assert opt.state[ours[0].weight]["step"].item() == 15


def test_loads_torch_adamw_state_dict(optim_kit):
    """Same state format as torch: a torch AdamW checkpoint continues identically in ours."""
    k = optim_kit
    ref, ours = k.mlp(), k.mlp()
    ref_opt = torch.optim.AdamW(ref.parameters(), **HP)
    k.train_steps(ref, ref_opt, 10)
    ours.load_state_dict(ref.state_dict())
    our_opt = AdamW(ours.parameters(), **HP)
    our_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))  # as if read from disk: no shared tensors
    k.train_steps(ref, ref_opt, 10, seed=9)
    k.train_steps(ours, our_opt, 10, seed=9)
    assert k.max_diff(ref, ours) <= 1e-6


def closure_step(k):
    """One ``opt.step(closure)``; returns (model, recorded grad modes, loss before, returned loss, x, y)."""
    model = k.mlp()
    opt = AdamW(model.parameters(), **HP)
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    before = closure().item()
    loss = opt.step(closure)
    return model, calls, before, loss, x, y


def test_closure_returns_loss_and_is_evaluated_with_grad(optim_kit):
    _, calls, before, loss, _, _ = closure_step(optim_kit)
    assert calls == [True, True] and loss.item() == pytest.approx(before)


def test_step_with_a_closure_equals_torch_step(optim_kit):
    model, _, _, _, x, y = closure_step(optim_kit)
    ref = optim_kit.mlp()
    ref_opt = torch.optim.AdamW(ref.parameters(), **HP)
    ref_opt.zero_grad()
    nn.functional.cross_entropy(ref(x), y).backward()
    ref_opt.step()
    assert optim_kit.max_diff(ref, model) <= 1e-6


def test_optimizer_works_in_the_training_schedule(optim_kit):
    """torch's LR schedulers drive our optimizer like torch's (the train() loop uses LambdaLR)."""
    ref, ours = optim_kit.mlp(), optim_kit.mlp()
    opts = [torch.optim.AdamW(ref.parameters(), **HP), AdamW(ours.parameters(), **HP)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 / (1 + s)) for o in opts]
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        x = torch.randn(8, 12, generator=gen)
        for model, opt, sched in zip((ref, ours), opts, scheds):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            sched.step()
    assert optim_kit.max_diff(ref, ours) <= 1e-6


def test_deepcopied_state_dict_does_not_follow_later_steps(optim_kit):
    model = optim_kit.mlp()
    opt = AdamW(model.parameters(), **HP)
    optim_kit.train_steps(model, opt, 3)
    sd = copy.deepcopy(opt.state_dict())
    optim_kit.train_steps(model, opt, 3)
    assert not torch.equal(sd["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


# --- state_bytes ------------------------------------------------------------------------------

def test_state_bytes_is_zero_before_the_first_step():
    p = torch.nn.Parameter(torch.zeros(10, 3))
    assert state_bytes(torch.optim.AdamW([p])) == 0


def test_state_bytes_counts_the_two_adamw_moments():
    p = torch.nn.Parameter(torch.zeros(10, 3))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones_like(p)
    opt.step()
    assert state_bytes(opt) == 2 * 30 * 4  # exp_avg, exp_avg_sq (fp32); the step scalar not


# --- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_name_the_parameter(optim_kit, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name.replace("[", r"\[")):
        AdamW(optim_kit.mlp().parameters(), **kwargs)


def test_a_bad_learning_rate_in_a_param_group_is_rejected(optim_kit):
    model = optim_kit.mlp()
    with pytest.raises(ValueError, match="lr"):
        AdamW([{"params": model[0].parameters(), "lr": -1.0}, {"params": model[2].parameters()}])


def test_complex_parameters_are_rejected():
    with pytest.raises(TypeError, match="floating"):
        AdamW([nn.Parameter(torch.zeros(3, dtype=torch.complex64))])


def test_foreach_must_be_a_bool(optim_kit):
    with pytest.raises(TypeError, match="foreach"):
        AdamW(optim_kit.mlp().parameters(), foreach="yes")


def test_sparse_gradients_are_rejected_at_the_step():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = AdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_boundary_hyperparameters_are_allowed():
    check_hyperparameters(0.0, (0.0, 0.0), 1e-12, 0.0)  # the boundary values are allowed
