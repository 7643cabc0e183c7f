"""Memory accounting (measured bytes, timelines), the paper-scale estimator, the GPU record
in docs/gpu.md, and the memory figures and widget."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from minilora.course import gpu_record
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
from minilora.memory.estimate import GB, LLAMA, NF4_DQ_BITS, LlamaShape, finetune_memory, paper_claims

ROOT = Path(__file__).resolve().parent.parent


class Tiny(nn.Module):
    """x → Linear(8, 16) → ReLU → Linear(16, 2) → cross-entropy, returning ``.loss`` like HF."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin1, self.relu, self.lin2 = nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)

    def forward(self, x, labels):
        return SimpleNamespace(loss=nn.functional.cross_entropy(self.lin2(self.relu(self.lin1(x))), labels))


def tiny_bert(layers=2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return BertForSequenceClassification(config).train()


def bert_batch(n, length=16):
    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, 100, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (n,), generator=g)}


TINY_LLAMA = LlamaShape("tiny", vocab=100, d_model=32, n_layers=2, d_ff=88, n_heads=4)


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                        intermediate_size=88, num_attention_heads=4, num_key_value_heads=4,
                                        tie_word_embeddings=False))


def test_storage_bytes_counts_each_storage_once():
    t = torch.zeros(10, 10)
    assert storage_bytes([t, t[0], t.T, None]) == 400
    assert storage_bytes([t, torch.zeros(3, dtype=torch.float64)]) == 424


def test_model_bytes_after_a_real_step():
    model = Tiny()
    model.lin1.requires_grad_(False)
    opt = AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(4, 8), torch.tensor([0, 1, 0, 1])).loss.backward()
    opt.step()
    b = model_bytes(model, opt)
    assert b["weights"] == 4 * (8 * 16 + 16 + 16 * 2 + 2)
    assert b["trainable"] == b["gradients"] == 4 * (16 * 2 + 2)
    assert b["optimizer states"] == 2 * b["trainable"]


def test_saved_activations_are_attributed_deduplicated_and_exclude_weights():
    model = Tiny()
    batch = {"x": torch.randn(5, 8), "labels": torch.tensor([0, 1, 1, 0, 1])}
    before = [p.clone() for p in model.parameters()]
    m = measure_step(model, batch, blocks=[("lin1", model.lin1), ("relu", model.relu), ("lin2", model.lin2)])
    acts = dict(zip(m.blocks, m.activation_bytes))
    assert acts["lin1"] == 5 * 8 * 4  # the input x (its weight is a parameter: not counted)
    assert acts["relu"] == 5 * 16 * 4  # ReLU's output
    assert acts["lin2"] == 0  # saves the same ReLU output again: counted once
    assert acts["(outside blocks)"] > 0  # the loss
    assert m.gradient_bytes[:3] == [4 * (8 * 16 + 16), 0, 4 * (16 * 2 + 2)]
    assert m.state_bytes == 2 * m.weight_bytes and sum(m.chunk_bytes) == m.weight_bytes
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # lr = 0: untouched
    assert all(p.grad is None for p in model.parameters())


def test_transformer_blocks_and_activation_scaling():
    model = tiny_bert()
    names = [n for n, _ in default_blocks(model)]
    assert names == ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler",
                     "dropout", "classifier"]
    small, big = measure_step(model, bert_batch(4)), measure_step(model, bert_batch(8))
    layer0, layer1 = small.activation_bytes[1], small.activation_bytes[2]
    assert layer0 == layer1 > 0  # identical layers save identical bytes
    assert 1.9 < big.activation_bytes[1] / layer0 <= 2.0  # ∝ batch (the per-batch mask is shared)
    assert sum(small.gradient_bytes) == model_bytes(model)["trainable"]
    assert small.state_bytes == 2 * model_bytes(model)["trainable"]


def test_step_timeline_paging_removes_states_from_forward_and_backward():
    m = measure_step(tiny_bert(), bert_batch(8))
    plain, paged = step_timeline(m), step_timeline(m, paged=True)
    assert plain.events == paged.events and list(plain.parts) == list(PARTS)
    S = m.state_bytes
    for phase in ("forward", "backward"):
        assert plain.phase_peak(phase) - paged.phase_peak(phase) == S
    assert plain.phase_peak("step") == paged.phase_peak("step")  # states are back for the update
    i = plain.events.index("optimizer step")
    assert paged.parts["optimizer states"][i] == S and paged.parts["optimizer states"][0] == 0
    assert plain.parts["activations"][i] == 0 and plain.parts["gradients"][i] == sum(m.gradient_bytes)
    assert max(plain.parts["activations"]) == sum(m.activation_bytes)
    assert plain.peak == max(plain.totals) and plain.peak_event in plain.events


def test_measured_timeline_structure_with_a_fake_probe():
    """The CUDA measurement's bookkeeping, driven on CPU by a probe that counts its reads."""
    reads = iter(range(1000))
    probe = SimpleNamespace(sync=lambda: None, reset=lambda: None, current=lambda: next(reads) * 10,
                            peak=lambda: 999)
    model = tiny_bert()
    opt = AdamW(model.parameters())
    tl = measured_step_timeline(model, bert_batch(2), opt, probe=probe)
    assert tl.events[0] == "start" and tl.events[-2:] == ["optimizer step", "zero_grad"]
    fwd = [e for e in tl.events if e.startswith("fwd")]
    bwd = [e for e in tl.events if e.startswith("bwd")]
    assert fwd == ["fwd " + n for n, _ in default_blocks(model)]
    assert bwd[0] == "bwd classifier" and "bwd bert.encoder.layer.0" in bwd
    assert tl.forward_backward_peak == 999 and tl.parts["torch tensors"][-2] == 999
    assert set(tl.parts["managed states on GPU"]) == {0} and all(p.grad is None for p in model.parameters())


def test_llama_parameter_counts_match_transformers():
    shape = TINY_LLAMA
    model = tiny_llama()
    assert shape.parameter_counts()["total"] == sum(p.numel() for p in model.parameters())
    assert round(LLAMA["65B"].parameter_counts()["total"] / 1e9, 1) == 65.3
    assert round(LLAMA["7B"].parameter_counts()["total"] / 1e9, 2) == 6.74


def test_lora_parameter_count_matches_peft():
    peft = pytest.importorskip("peft", reason="peft is the reference (installed by make test)")

    shape = TINY_LLAMA
    model = tiny_llama()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules=targets))
    assert shape.lora_parameters(r=8) == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_paper_claims_are_reproduced_by_the_formula():
    claims = paper_claims()
    assert claims["full_exceeds_780"] and claims["qlora_below_48"]
    full = finetune_memory("65B", "full")
    n = full["parameters"]
    assert full["weights"] + full["gradients"] + full["optimizer states"] == 12 * n  # 2 + 2 + 8 bytes/param
    assert NF4_DQ_BITS == pytest.approx(4.127, abs=1e-3)
    q = finetune_memory("65B", "qlora")
    assert 30 * GB < q["weights"] < 40 * GB and q["trainable"] / n < 0.013


def test_estimator_monotone_and_paging():
    base = finetune_memory("7B", "qlora", seq_len=512)
    longer = finetune_memory("7B", "qlora", seq_len=4096)
    assert longer["activations"] > 8 * base["activations"] * 0.99
    no_ckpt = finetune_memory("7B", "qlora", seq_len=512, checkpointing=False)
    assert no_ckpt["activations"] > base["activations"]
    paged = finetune_memory("7B", "qlora", paged=True)
    assert paged["optimizer states"] == 0 and paged["host (paged states)"] == base["optimizer states"]
    assert base["total"] - paged["total"] == pytest.approx(base["optimizer states"])


@pytest.mark.parametrize("kwargs, name", [(dict(method="adam"), "method"), (dict(shape="70B"), "shape"),
                                          (dict(seq_len=0), "seq_len"), (dict(batch=1.5), "batch"),
                                          (dict(r=True), "r")])
def test_estimator_bad_inputs(kwargs, name):
    args = {"shape": "7B", **kwargs}
    with pytest.raises(ValueError, match=name):
        finetune_memory(**args)


def test_gpu_record_round_trip(tmp_path):
    page = tmp_path / "gpu.md"
    block = f"{gpu_record.START}\n{gpu_record.NOT_RECORDED}\n{gpu_record.END}"
    page.write_text(f"# GPU\nintro\n\n{block}\nafter\n")
    assert gpu_record.read_record(page) is None
    record = {"date": "2026-11-27", "card": "Test Card", "torch": "2.x", "cuda_runtime": 12040,
              "rows": [{"check": "a | b", "result": "PASS", "detail": "x --> y <!-- z",
                        "values": {"v": 1.5}}]}
    gpu_record.write_record(page, record)
    text = page.read_text()
    assert text.startswith("# GPU\nintro\n") and text.endswith("after\n") and "Test Card" in text
    assert gpu_record.read_record(page) == record
    assert "| a \\| b | PASS |" in text
    with pytest.raises(ValueError, match="card"):
        gpu_record.format_record({"date": "x", "rows": []})


def test_committed_docs_page_parses():
    record = gpu_record.read_record(ROOT / "docs" / "gpu.md")
    assert record is None or {"date", "card", "rows"} <= set(record)


def test_figures():
    pytest.importorskip("matplotlib")
    from minilora.viz.memory import memory_stack_figure, timeline_figure

    m = measure_step(tiny_bert(), bert_batch(4))
    fig = timeline_figure({"AdamW": step_timeline(m), "PagedAdamW": step_timeline(m, paged=True)})
    assert len(fig.axes) == 2
    fig = memory_stack_figure({k: finetune_memory("65B", k) for k in ("full", "qlora")})
    assert len(fig.axes) == 1
    with pytest.raises(ValueError):
        timeline_figure({})


def test_widget_driven_by_value():
    pytest.importorskip("ipywidgets")
    from minilora.memory import memory_summary
    from minilora.widgets.memory import MemoryExplorer

    panel = MemoryExplorer(draw=False)
    first = panel.summary
    assert first == memory_summary() and first["fits_gb"] == 48
    panel.seq_len.value = 4096
    assert panel.summary["activations"] > first["activations"]
    panel.paged.value = True
    assert panel.summary["optimizer states"] == 0 and panel.summary["host_gb"] > 0
    panel.method.value = "full"
    assert panel.summary["fits_gb"] is None and "does not fit" in panel.text.value
    panel.model.value = "7B"
    panel.method.value = "qlora"
    assert panel.summary["fits_gb"] == 24


def test_default_record_path_is_this_checkouts_page(tmp_path):
    assert gpu_record.default_record_path() == ROOT / "docs" / "gpu.md"
    assert gpu_record.read_record() == gpu_record.read_record(ROOT / "docs" / "gpu.md")
    with pytest.raises(FileNotFoundError, match="docs/gpu.md"):
        gpu_record.read_record(tmp_path / "missing.md")
