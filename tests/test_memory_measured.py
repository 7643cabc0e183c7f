"""minilora.memory.measured: bytes of weights, gradients, optimizer states and saved activations
measured on real steps, block by block, and the memory timeline of one step."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from minilora.adamw import AdamW
from minilora.memory.measured import (
    PARTS,
    default_blocks,
    measure_step,
    measured_step_timeline,
    model_bytes,
    step_timeline,
    storage_bytes,
)


class Tiny(nn.Module):
    """x → Linear(8, 16) → ReLU → Linear(16, 2) → cross-entropy, returning ``.loss`` like HF."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin1, self.relu, self.lin2 = nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)

    def forward(self, x, labels):
        return SimpleNamespace(loss=nn.functional.cross_entropy(self.lin2(self.relu(self.lin1(x))), labels))


# --- storage_bytes, model_bytes -----------------------------------------------------------------

def test_storage_bytes_counts_a_shared_storage_once():
    t = torch.zeros(10, 10)
    assert storage_bytes([t, t[0], t.T, None]) == 400


def test_storage_bytes_adds_distinct_storages():
    t = torch.zeros(10, 10)
    assert storage_bytes([t, torch.zeros(3, dtype=torch.float64)]) == 424


@pytest.fixture
def stepped():
    """``model_bytes`` of Tiny after one AdamW step with lin1 frozen."""
    model = Tiny()
    model.lin1.requires_grad_(False)
    opt = AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(4, 8), torch.tensor([0, 1, 0, 1])).loss.backward()
    opt.step()
    return model_bytes(model, opt)


def test_model_bytes_counts_every_weight(stepped):
    assert stepped["weights"] == 4 * (8 * 16 + 16 + 16 * 2 + 2)


def test_model_bytes_counts_gradients_of_the_trainable_parameters_only(stepped):
    assert stepped["trainable"] == stepped["gradients"] == 4 * (16 * 2 + 2)


def test_model_bytes_counts_two_adamw_states_per_trainable_number(stepped):
    assert stepped["optimizer states"] == 2 * stepped["trainable"]


# --- measure_step on a two-layer MLP --------------------------------------------------------------

@pytest.fixture
def tiny_step():
    """(Tiny, its parameters before, measure_step with the blocks lin1, relu, lin2 on 5 rows)."""
    model = Tiny()
    batch = {"x": torch.randn(5, 8), "labels": torch.tensor([0, 1, 1, 0, 1])}
    before = [p.clone() for p in model.parameters()]
    m = measure_step(model, batch, blocks=[("lin1", model.lin1), ("relu", model.relu), ("lin2", model.lin2)])
    return model, before, m


def test_saved_activations_are_attributed_to_their_block(tiny_step):
    _, _, m = tiny_step
    acts = dict(zip(m.blocks, m.activation_bytes))
    assert acts["relu"] == 5 * 16 * 4  # ReLU's output
    assert acts["(outside blocks)"] > 0  # the loss


def test_saved_activations_exclude_weights(tiny_step):
    _, _, m = tiny_step
    acts = dict(zip(m.blocks, m.activation_bytes))
    assert acts["lin1"] == 5 * 8 * 4  # the input x (its weight is a parameter: not counted)


def test_a_tensor_saved_twice_is_counted_once(tiny_step):
    _, _, m = tiny_step
    acts = dict(zip(m.blocks, m.activation_bytes))
    assert acts["lin2"] == 0  # saves the same ReLU output again: counted once


def test_gradient_bytes_are_measured_per_block(tiny_step):
    _, _, m = tiny_step
    assert m.gradient_bytes[:3] == [4 * (8 * 16 + 16), 0, 4 * (16 * 2 + 2)]


def test_state_bytes_are_two_per_weight_and_chunks_add_up(tiny_step):
    _, _, m = tiny_step
    assert m.state_bytes == 2 * m.weight_bytes and sum(m.chunk_bytes) == m.weight_bytes


def test_measure_step_leaves_the_weights_untouched(tiny_step):
    model, before, _ = tiny_step
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # lr = 0: untouched


def test_measure_step_clears_the_gradients(tiny_step):
    model, _, _ = tiny_step
    assert all(p.grad is None for p in model.parameters())


# --- measure_step on a transformer ------------------------------------------------------------

def test_default_blocks_of_a_bert_are_its_layers_and_heads(training_bert):
    names = [n for n, _ in default_blocks(training_bert())]
    assert names == ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler",
                     "dropout", "classifier"]


@pytest.fixture
def bert_steps(training_bert, bert_batch):
    """(model, measure_step at batch 4, measure_step at batch 8) on the tiny training BERT."""
    model = training_bert()
    return model, measure_step(model, bert_batch(4)), measure_step(model, bert_batch(8))


def test_identical_layers_save_identical_bytes(bert_steps):
    _, small, _ = bert_steps
    layer0, layer1 = small.activation_bytes[1], small.activation_bytes[2]
    assert layer0 == layer1 > 0  # identical layers save identical bytes


def test_saved_activations_grow_with_the_batch(bert_steps):
    _, small, big = bert_steps
    # ∝ batch (the per-batch mask is shared)
    assert 1.9 < big.activation_bytes[1] / small.activation_bytes[1] <= 2.0


def test_measured_gradients_and_states_match_model_bytes(bert_steps):
    model, small, _ = bert_steps
    assert sum(small.gradient_bytes) == model_bytes(model)["trainable"]
    assert small.state_bytes == 2 * model_bytes(model)["trainable"]


# --- step_timeline ------------------------------------------------------------------------------

@pytest.fixture
def timelines(training_bert, bert_batch):
    """(measurement, plain timeline, paged timeline) of one step of the tiny training BERT."""
    m = measure_step(training_bert(), bert_batch(8))
    return m, step_timeline(m), step_timeline(m, paged=True)


def test_paged_and_plain_timelines_share_events_and_parts(timelines):
    _, plain, paged = timelines
    assert plain.events == paged.events and list(plain.parts) == list(PARTS)


def test_paging_removes_the_states_from_forward_and_backward(timelines):
    m, plain, paged = timelines
    for phase in ("forward", "backward"):
        assert plain.phase_peak(phase) - paged.phase_peak(phase) == m.state_bytes


def test_paged_states_are_back_for_the_update(timelines):
    m, plain, paged = timelines
    assert plain.phase_peak("step") == paged.phase_peak("step")  # states are back for the update
    i = plain.events.index("optimizer step")
    assert paged.parts["optimizer states"][i] == m.state_bytes and paged.parts["optimizer states"][0] == 0


def test_at_the_update_activations_are_freed_and_gradients_all_held(timelines):
    m, plain, _ = timelines
    i = plain.events.index("optimizer step")
    assert plain.parts["activations"][i] == 0 and plain.parts["gradients"][i] == sum(m.gradient_bytes)


def test_activations_peak_at_their_measured_total(timelines):
    m, plain, _ = timelines
    assert max(plain.parts["activations"]) == sum(m.activation_bytes)


def test_timeline_peak_is_its_largest_total(timelines):
    _, plain, _ = timelines
    assert plain.peak == max(plain.totals) and plain.peak_event in plain.events


# --- measured_step_timeline, driven on CPU by a fake probe ---------------------------------------

@pytest.fixture
def probed(training_bert, bert_batch):
    """The CUDA measurement's bookkeeping, driven on CPU by a probe that counts its reads."""
    reads = iter(range(1000))
    probe = SimpleNamespace(sync=lambda: None, reset=lambda: None, current=lambda: next(reads) * 10,
                            peak=lambda: 999)
    model = training_bert()
    opt = AdamW(model.parameters())
    return model, measured_step_timeline(model, bert_batch(2), opt, probe=probe)


def test_measured_timeline_runs_from_start_to_zero_grad(probed):
    _, tl = probed
    assert tl.events[0] == "start" and tl.events[-2:] == ["optimizer step", "zero_grad"]


def test_measured_timeline_marks_every_block_forward_and_backward(probed):
    model, tl = probed
    fwd = [e for e in tl.events if e.startswith("fwd")]
    bwd = [e for e in tl.events if e.startswith("bwd")]
    assert fwd == ["fwd " + n for n, _ in default_blocks(model)]
    assert bwd[0] == "bwd classifier" and "bwd bert.encoder.layer.0" in bwd


def test_measured_timeline_takes_the_peak_from_the_probe(probed):
    _, tl = probed
    assert tl.forward_backward_peak == 999 and tl.parts["torch tensors"][-2] == 999


def test_measured_timeline_without_paging_keeps_no_managed_states_and_clears_grads(probed):
    model, tl = probed
    assert set(tl.parts["managed states on GPU"]) == {0} and all(p.grad is None for p in model.parameters())
