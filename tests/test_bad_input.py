"""Bad input across the public API: each call raises the right error type, and the message
names the parameter (or the field, file and line) that is wrong.

The table covers every family of issue 10's probe: hangs (loops over no data), non-finite
values inside correct-looking results, unvalidated containers, LoRA arguments that cannot
train, half-done file operations, the cache, data/model loading, optimizer states and the
estimators. Family-specific behaviour (what happens after the error) is tested below the
table.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from minilora import checks
from minilora.adamw import AdamW
from minilora.course import cache_key, format_record, load_or_compute
from minilora.data import Encoded, Snippet, batches, encode, label_of, load_snippets, read_tsv, sample_indices
from minilora.files import atomic_folder
from minilora.lora import (
    LoRALinear,
    apply_lora,
    lora_costs,
    lora_parameter_count,
    mark_only_lora_trainable,
    replace_module,
)
from minilora.memory import (
    LLAMA,
    LlamaShape,
    Timeline,
    activation_bytes,
    finetune_memory,
    measured_step_timeline,
)
from minilora.models import check_device, load_model
from minilora.paged import PagedAdamW
from minilora.quant import (
    dequantize,
    dynamic_map,
    excess_kurtosis,
    int4_levels,
    linear_weights,
    logit_kl,
    mean_and_se,
    nearest_codes,
    nf4_levels,
    normal_float_levels,
    pack_nibbles,
    quantize_absmax,
    quantize_blockwise,
    unpack_nibbles,
)
from minilora.rank import (
    amplification_factor,
    effective_rank,
    energy_rank,
    subspace_similarity,
    truncate,
    truncation_summary,
)
from minilora.stats import PairedTest, binomial_se, compare, mcnemar, paired_bootstrap
from minilora.train import lr_multiplier, predict, train
from minilora.widgets import MemoryExplorer

NAN, INF = float("nan"), float("inf")
LLAMA_7B = LLAMA["7B"]


def read_tsv_text(text):
    return read_tsv_bytes(text.encode())


def read_tsv_bytes(raw):
    import tempfile
    from pathlib import Path

    f = Path(tempfile.mkdtemp()) / "x.tsv"
    f.write_bytes(raw)
    return read_tsv(f)


def tied():
    m = nn.Sequential(nn.Linear(4, 4))
    m.append(m[0])
    return m


def enter(context):
    with context:
        pass


def empty_encoded():
    return Encoded(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long),
                   torch.zeros(0, dtype=torch.long))


def tiny_encoded(n=4):
    return Encoded(torch.ones(n, 3, dtype=torch.long), torch.ones(n, 3, dtype=torch.long),
                   torch.zeros(n, dtype=torch.long))


def q_nf4():
    return quantize_blockwise(torch.randn(8, 16), nf4_levels(), 64)


def replace(q, **kw):
    return lambda: dataclasses.replace(q, **kw)


Q = q_nf4()
QDQ = quantize_blockwise(torch.randn(40, 64), nf4_levels(), 64, double_quant=True)
QDQ_SMALL = quantize_blockwise(torch.randn(20, 64), nf4_levels(), 64, double_quant=True)
Q4 = quantize_blockwise(torch.randn(8, 16), int4_levels(), 64)
LIN = nn.Linear(8, 4)
P = nn.Parameter(torch.zeros(3))

# (id, call, error type, a word the message must contain)
CASES = [
    # ---- ground floor: checks, stats
    ("check_int bool", lambda: checks.check_int(True, "steps", 1), TypeError, "steps"),
    ("check_number nan", lambda: checks.check_number(NAN, "lr"), ValueError, "lr"),
    ("binomial_se p>1", lambda: binomial_se(1.5, 10), ValueError, "accuracy"),
    ("binomial_se n=0", lambda: binomial_se(0.5, 0), ValueError, "n must"),
    ("binomial_se n float", lambda: binomial_se(0.5, 10.0), TypeError, "n must"),
    ("compare z<=0", lambda: compare(0.5, 0.6, 10, z=0), ValueError, "z must"),
    ("mcnemar lengths", lambda: mcnemar([True, False], [True]), ValueError, "correct_a"),
    ("mcnemar non-binary", lambda: mcnemar([0, 2], [1, 1]), ValueError, "correct_a"),
    ("mcnemar empty", lambda: mcnemar([], []), ValueError, "correct_a"),
    ("bootstrap nan", lambda: paired_bootstrap([1.0, NAN], [0.0, 1.0]), ValueError, "finite"),
    ("bootstrap n_boot", lambda: paired_bootstrap([1.0, 0.0], [0.0, 1.0], n_boot=5), ValueError, "n_boot"),
    ("bootstrap level", lambda: paired_bootstrap([1.0, 0.0], [0.0, 1.0], level=1.0), ValueError, "level"),
    # ---- data
    ("label_of nan", lambda: label_of(NAN), ValueError, "valence"),
    ("load_snippets domain", lambda: load_snippets("imdb"), ValueError, "domain"),
    ("load_snippets split", lambda: load_snippets("movie", "dev"), ValueError, "split"),
    ("load_snippets neutral flag", lambda: load_snippets("movie", "test", include_neutral="no"), TypeError,
     "include_neutral"),
    ("encode label 2", lambda: encode([Snippet("1", "good", 1.0, 2)], None), ValueError, "label"),
    ("encode neutral", lambda: encode([Snippet("1", "meh", 0.0, None)], None), ValueError, "neutral"),
    ("encode not a snippet", lambda: encode(["text"], None), TypeError, "snippets[0]"),
    ("encode max_length", lambda: encode([Snippet("1", "a", 1.0, 1)], None, max_length=1), ValueError,
     "max_length"),
    ("Encoded shapes", lambda: Encoded(torch.ones(2, 3), torch.ones(2, 4), torch.ones(2)), ValueError,
     "attention_mask"),
    ("Encoded labels", lambda: Encoded(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3)),
     ValueError, "labels"),
    ("batches empty", lambda: list(batches(empty_encoded())), ValueError, "no rows"),
    ("batches batch_size", lambda: list(batches(tiny_encoded(), 0)), ValueError, "batch_size"),
    ("subset n", lambda: tiny_encoded().subset(0), ValueError, "n must"),
    ("sample_indices seed", lambda: sample_indices(range(5), 2, seed=-1), ValueError, "seed"),
    # ---- training loop
    ("train empty data", lambda: train(nn.Linear(2, 2), empty_encoded(), steps=1), ValueError, "no rows"),
    ("train steps 0", lambda: train(nn.Linear(2, 2), tiny_encoded(), steps=0), ValueError, "steps"),
    ("train lr nan", lambda: train(nn.Linear(2, 2), tiny_encoded(), steps=1, lr=NAN), ValueError, "lr"),
    ("train warmup 1", lambda: train(nn.Linear(2, 2), tiny_encoded(), warmup=1.0), ValueError, "warmup"),
    ("train clip 0", lambda: train(nn.Linear(2, 2), tiny_encoded(), clip=0), ValueError, "clip"),
    ("train batch_size", lambda: train(nn.Linear(2, 2), tiny_encoded(), batch_size=0), ValueError,
     "batch_size"),
    ("train eval empty", lambda: train(nn.Linear(2, 2), tiny_encoded(), eval_data=empty_encoded()),
     ValueError, "eval_data"),
    ("train on_step", lambda: train(nn.Linear(2, 2), tiny_encoded(), on_step=3), TypeError, "on_step"),
    ("predict empty", lambda: predict(nn.Linear(2, 2), empty_encoded()), ValueError, "no rows"),
    # ---- models
    ("load_model missing folder", lambda: load_model("/nonexistent/model"),
     FileNotFoundError, "/nonexistent"),
    ("load_model name int", lambda: load_model(123), TypeError, "name"),
    ("load_model num_labels", lambda: load_model(num_labels=0), ValueError, "num_labels"),
    ("load_model dtype", lambda: load_model(dtype=torch.int8), TypeError, "dtype"),
    ("check_device nonsense", lambda: check_device("gpu0"), ValueError, "device"),
    # ---- LoRA
    ("LoRALinear alpha 0", lambda: LoRALinear(nn.Linear(8, 4), r=2, alpha=0), ValueError, "alpha"),
    ("LoRALinear alpha nan", lambda: LoRALinear(nn.Linear(8, 4), r=2, alpha=NAN), ValueError, "alpha"),
    ("LoRALinear r float", lambda: LoRALinear(nn.Linear(8, 4), r=1.5), ValueError, "r must"),
    ("LoRALinear r too big", lambda: LoRALinear(nn.Linear(8, 4), r=5), ValueError, "r must"),
    ("LoRALinear dropout 1", lambda: LoRALinear(nn.Linear(8, 4), r=2, dropout=1.0), ValueError, "dropout"),
    ("LoRALinear init", lambda: LoRALinear(nn.Linear(8, 4), r=2, init="xavier"), ValueError, "init"),
    ("LoRALinear base", lambda: LoRALinear(nn.Conv1d(2, 2, 1)), TypeError, "base"),
    ("apply_lora targets type", lambda: apply_lora(nn.Sequential(nn.Linear(2, 2)), 42), TypeError, "targets"),
    ("apply_lora regex", lambda: apply_lora(nn.Sequential(nn.Linear(2, 2)), "(0"), ValueError, "targets"),
    ("apply_lora no match", lambda: apply_lora(nn.Sequential(nn.Linear(2, 2)), ("q",)),
     ValueError, "targets"),
    ("apply_lora model", lambda: apply_lora("model"), TypeError, "model"),
    ("lora_parameter_count rank", lambda: lora_parameter_count(nn.Sequential(nn.Linear(4, 2)), ("0",), 3),
     ValueError, "r"),
    ("lora_costs head", lambda: lora_costs(nn.Sequential(nn.Linear(4, 2)), ("0",), 1, head_parameters=-1),
     ValueError, "head_parameters"),
    ("mark_only no lora", lambda: mark_only_lora_trainable(nn.Sequential(nn.Linear(2, 2))), ValueError,
     "apply_lora"),
    # ---- quantisation tables and codes
    ("normal_float bits", lambda: normal_float_levels(9), ValueError, "bits"),
    ("normal_float offset", lambda: normal_float_levels(4, offset=1.5), ValueError, "offset"),
    ("dynamic_map total_bits float", lambda: dynamic_map(total_bits=7.5), TypeError, "total_bits"),
    ("dynamic_map undefined layout", lambda: dynamic_map(signed=False, max_exponent_bits=2), ValueError,
     "total_bits"),
    ("dynamic_map exponent bits", lambda: dynamic_map(max_exponent_bits=8), ValueError, "max_exponent_bits"),
    ("pack_nibbles 16", lambda: pack_nibbles(torch.tensor([1, 16])), ValueError, "codes"),
    ("pack_nibbles negative", lambda: pack_nibbles(torch.tensor([-1, 3])), ValueError, "codes"),
    ("pack_nibbles float", lambda: pack_nibbles(torch.tensor([1.0, 2.0])), TypeError, "codes"),
    ("unpack_nibbles n float", lambda: unpack_nibbles(torch.zeros(2, dtype=torch.uint8), 1.5),
     TypeError, "n must"),
    ("unpack_nibbles n big", lambda: unpack_nibbles(torch.zeros(2, dtype=torch.uint8), 5),
     ValueError, "n must"),
    ("unpack_nibbles dtype", lambda: unpack_nibbles(torch.zeros(2), 2), TypeError, "packed"),
    ("nearest_codes nan", lambda: nearest_codes(torch.tensor([0.5, NAN]), nf4_levels()),
     ValueError, "scaled"),
    ("quantize nan", lambda: quantize_blockwise(torch.tensor([1.0, NAN] * 40), nf4_levels()), ValueError,
     "block 0"),
    ("quantize blocksize", lambda: quantize_blockwise(torch.randn(64), nf4_levels(), 48), ValueError,
     "blocksize"),
    ("quantize_absmax nan", lambda: quantize_absmax(torch.tensor([1.0, NAN])), ValueError, "absmax"),
    ("quantize_absmax levels", lambda: quantize_absmax(torch.ones(4), "fp16"), ValueError, "double_levels"),
    # ---- QuantizedTensor built or edited by hand
    ("qt packed length", replace(Q, packed=Q.packed[:-1]), ValueError, "packed"),
    ("qt packed dtype", replace(Q, packed=Q.packed.to(torch.int16)), ValueError, "packed"),
    ("qt shape", replace(Q, shape=torch.Size([8, 17])), ValueError, "packed"),
    ("qt negative shape", replace(Q, shape=(-8, 16)), ValueError, "shape"),
    ("qt blocksize", replace(Q, blocksize=100), ValueError, "blocksize"),
    ("qt absmax length", replace(Q, absmax=Q.absmax[:1].clone()), ValueError, "absmax"),
    ("qt absmax nan", replace(Q, absmax=torch.full_like(Q.absmax, NAN)), ValueError, "absmax"),
    ("qt levels", replace(Q, levels=torch.linspace(-2, 2, 16)), ValueError, "levels"),
    ("qt dtype", replace(Q, dtype=torch.int32), TypeError, "dtype"),
    ("qt code without level", replace(Q4, packed=torch.full_like(Q4.packed, 0xFF)), ValueError, "code 15"),
    ("qt dq absmax count", replace(QDQ, absmax=QDQ_SMALL.absmax), ValueError, "absmax must hold"),
    ("dequantize not qt", lambda: dequantize(torch.zeros(3)), TypeError, "q must"),
    ("dequantize impl", lambda: dequantize(Q, impl="fast"), ValueError, "impl"),
    # ---- optimizers
    ("AdamW lr negative", lambda: AdamW([P], lr=-1), ValueError, "lr"),
    ("AdamW betas", lambda: AdamW([P], betas=(0.9, 1.0)), ValueError, "betas[1]"),
    ("AdamW eps", lambda: AdamW([P], eps=0), ValueError, "eps"),
    ("AdamW amsgrad state", lambda: AdamW([P]).load_state_dict(
        {"state": {}, "param_groups": [{"params": [0], "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                        "weight_decay": 0.0, "amsgrad": True}]}), ValueError, "amsgrad"),
    ("AdamW maximize state", lambda: AdamW([P]).load_state_dict(
        {"state": {}, "param_groups": [{"params": [0], "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                        "weight_decay": 0.0, "maximize": True}]}), ValueError, "maximize"),
    ("AdamW state shape", lambda: AdamW([P]).load_state_dict(
        {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(4), "exp_avg_sq": torch.zeros(4)}},
         "param_groups": [{"params": [0], "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                           "weight_decay": 0.0}]}), ValueError, "shape"),
    ("PagedAdamW min_paged_numel", lambda: PagedAdamW([P], min_paged_numel=-1, paged=False), ValueError,
     "min_paged_numel"),
    # ---- rank
    ("truncate r", lambda: truncate(torch.eye(3), 4), ValueError, "r must"),
    ("effective_rank zero", lambda: effective_rank(torch.zeros(3, 3)), ValueError, "W must"),
    ("energy_rank frac", lambda: energy_rank(torch.eye(3), 1.5), ValueError, "frac"),
    ("subspace i", lambda: subspace_similarity(torch.eye(4)[:, :2], torch.eye(4)[:, :2], 3, 1),
     ValueError, "i must"),
    ("truncation_summary r", lambda: truncation_summary(torch.tensor([2.0, 1.0]), -1), ValueError, "r must"),
    ("truncation_summary sigma", lambda: truncation_summary(torch.tensor([1.0, 2.0]), 1),
     ValueError, "sigma"),
    # ---- memory estimators
    ("finetune_memory r", lambda: finetune_memory("7B", r=100_000), ValueError, "r must"),
    ("finetune_memory shape int", lambda: finetune_memory(7), TypeError, "shape"),
    ("finetune_memory shape name", lambda: finetune_memory("70B"), ValueError, "shape"),
    ("finetune_memory method", lambda: finetune_memory("7B", "dora"), ValueError, "method"),
    ("finetune_memory seq_len", lambda: finetune_memory("7B", seq_len=-1), ValueError, "seq_len"),
    ("finetune_memory paged", lambda: finetune_memory("7B", paged="yes"), TypeError, "paged"),
    ("LlamaShape vocab", lambda: LlamaShape("x", -5, 64, 2, 128, 4), ValueError, "vocab"),
    ("LlamaShape d_model", lambda: LlamaShape("x", 10, 0, 2, 128, 4), ValueError, "d_model"),
    ("LlamaShape heads", lambda: LlamaShape("x", 10, 64, 2, 128, 6), ValueError, "n_heads"),
    ("activation_bytes batch", lambda: activation_bytes("7B", batch=0), ValueError, "batch"),
    # ---- second probe: members of the same families that the first table did not list
    ("check_choice substring", lambda: checks.check_choice("ab", "method", "abc"), ValueError, "method"),
    ("check_number huge int", lambda: checks.check_number(10**400, "lr"), ValueError, "lr"),
    ("compare acc_a", lambda: compare(1.5, 0.6, 10), ValueError, "acc_a"),
    ("PairedTest by hand", lambda: PairedTest(0, 2.0, NAN, -3, 5, NAN, -1, 7.0, NAN), ValueError, "n must"),
    ("bootstrap strings", lambda: paired_bootstrap(["a", "b"], ["c", "d"]), TypeError, "values_a"),
    ("valence with underscore", lambda: read_tsv_text("id\tvalence\ttext\n1\t0_3\tx\n"), ValueError,
     "valence '0_3'"),
    ("id with spaces", lambda: read_tsv_text("id\tvalence\ttext\n a\t1\tx\n"), ValueError, "id"),
    ("invalid utf-8", lambda: read_tsv_bytes(b"id\tvalence\ttext\n1\t1\t\xff\n"),
     ValueError, ":2: not valid"),
    ("read_tsv folder", lambda: read_tsv("/tmp"), FileNotFoundError, "path must"),
    ("Snippet nan", lambda: Snippet("1", "x", NAN, 1), ValueError, "valence"),
    ("Encoded float ids", lambda: Encoded(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.long),
                                          torch.zeros(2, dtype=torch.long)), TypeError, "input_ids"),
    ("Encoded mask 2", lambda: Encoded(torch.ones(2, 3, dtype=torch.long), torch.full((2, 3), 2),
                                       torch.zeros(2, dtype=torch.long)), ValueError, "attention_mask"),
    ("Encoded empty batch", lambda: tiny_encoded().batch([]), ValueError, "index"),
    ("encode no tokenizer", lambda: encode([Snippet("1", "good", 1.0, 1)], None), TypeError, "tokenizer"),
    ("lr_multiplier warmup", lambda: lr_multiplier(5, 10, -1), ValueError, "warmup_steps"),
    ("train bad factory", lambda: train(Tiny(0), tiny_encoded(), optimizer=lambda p: None), TypeError,
     "optimizer"),
    ("train model without params", lambda: train(nn.Module(), tiny_encoded()), ValueError, "model"),
    ("AdamW lr x weight_decay", lambda: AdamW([P], lr=1.0, weight_decay=3.0), ValueError, "weight_decay"),
    ("AdamW eps underflows", lambda: AdamW([P], eps=1e-50), ValueError, "eps"),
    ("AdamW huge lr", lambda: AdamW([P], lr=1e38), ValueError, "lr"),
    ("AdamW duplicate param", lambda: AdamW([P, P]), ValueError, "twice"),
    ("AdamW empty", lambda: AdamW([]), ValueError, "params"),
    ("AdamW one tensor", lambda: AdamW(P), TypeError, "params"),
    ("LoRALinear rslora str", lambda: LoRALinear(nn.Linear(8, 4), r=2, rslora="no"), TypeError, "rslora"),
    ("apply_lora seed", lambda: apply_lora(nn.Sequential(nn.Linear(2, 2)), ("0",), r=1, seed=-1), ValueError,
     "seed"),
    ("apply_lora tied", lambda: apply_lora(tied(), ("0", "1"), r=2), ValueError, "tied"),
    ("lora_parameter_count non-linear", lambda: lora_parameter_count(
        nn.Sequential(nn.Linear(2, 2), nn.ReLU()), ("0", "1"), 1), TypeError, "ReLU"),
    ("replace_module missing", lambda: replace_module(nn.Sequential(nn.Linear(2, 2)), "nope", nn.Identity()),
     ValueError, "name"),
    ("as_levels one value", lambda: quantize_blockwise(torch.randn(64), torch.tensor([1.0, 1.0])), ValueError,
     "distinct"),
    ("double_levels typo", lambda: quantize_blockwise(torch.randn(64), nf4_levels(), double_levels="bogus"),
     ValueError, "double_levels"),
    ("nf offset near 1/2", lambda: normal_float_levels(4, offset=0.5000001), ValueError, "offset"),
    ("kl shapes", lambda: logit_kl(torch.zeros(2, 2), torch.zeros(3, 2)), ValueError, "shape"),
    ("mean_and_se one value", lambda: mean_and_se(torch.tensor([1.0])), ValueError, "values"),
    ("kurtosis of a constant", lambda: excess_kurtosis(torch.zeros(10)), ValueError, "w must"),
    ("skip everything", lambda: linear_weights(nn.Sequential(nn.Linear(2, 2)), skip=("",)),
     ValueError, "skip"),
    ("amplification of zero", lambda: amplification_factor(torch.zeros(4, 4), torch.eye(4), 2), ValueError,
     "delta"),
    ("cache key escape", lambda: load_or_compute("ok", "x/../../escaped", lambda: ({}, {})),
     ValueError, "key"),
    ("cache unknown module", lambda: cache_key({"a": 1}, "minilora.nope"), ValueError, "module"),
    ("cache files str", lambda: cache_key({"a": 1}, "minilora.train", files="/etc/hostname"), TypeError,
     "files"),
    ("atomic_folder root", lambda: enter(atomic_folder("/", replaces=None)), ValueError, "folder of its own"),
    ("Timeline lengths", lambda: Timeline(["a", "b"], ["forward"], {"w": [1, 2]}), ValueError, "phases"),
    ("Timeline phase", lambda: Timeline(["a"], ["fwd"], {"w": [1]}), ValueError, "phases"),
    ("lora_parameters r", lambda: LLAMA_7B.lora_parameters(r=-5), ValueError, "r must"),
    ("MemoryExplorer seq_len", lambda: MemoryExplorer(seq_len=100_000, draw=False), ValueError, "seq_len"),
    ("MemoryExplorer model", lambda: MemoryExplorer(model="70B", draw=False), ValueError, "model"),
    ("gpu record nan", lambda: format_record({"date": "d", "card": "c", "rows": [], "n": NAN}), ValueError,
     "NaN"),
    ("load_model meta", lambda: check_device("meta"), ValueError, "device"),
]


@pytest.mark.parametrize("call, error, word", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_an_error_naming_the_parameter(call, error, word):
    with pytest.raises(error) as info:
        call()
    assert word in str(info.value), f"the message does not name {word!r}: {info.value}"


def test_the_table_is_large():
    assert len(CASES) >= 60


# ---- family 1: loops driven by data refuse empty input (no hang) ------------------------

def test_train_refuses_an_empty_dataset_instead_of_looping_forever():
    with pytest.raises(ValueError, match="no rows"):
        train(nn.Linear(2, 2), empty_encoded(), steps=3)


# ---- family 2: non-finite values never hide inside a result -----------------------------

class Tiny(nn.Module):
    """A model with the Hugging Face calling convention: model(input_ids, attention_mask, labels).loss."""

    def __init__(self, poison_at):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.poison_at, self.calls = poison_at, 0

    def forward(self, input_ids, attention_mask, labels):
        self.calls += 1
        loss = nn.functional.cross_entropy(self.lin(input_ids.float()), labels)
        if self.calls == self.poison_at:
            # sqrt(w − w) is 0 (the loss stays finite) but its gradient is inf · 0 = NaN
            loss = loss + torch.sqrt(self.lin.weight - self.lin.weight).sum()
        return type("Out", (), {"loss": loss})()


def test_a_nan_gradient_stops_training_before_the_weights_change():
    model = Tiny(poison_at=3)  # the last step's gradient is NaN, its loss finite
    data = Encoded(torch.randint(0, 9, (8, 3)), torch.ones(8, 3, dtype=torch.long), torch.randint(0, 2, (8,)))
    with pytest.raises(FloatingPointError, match="step 3"):
        train(model, data, steps=3, batch_size=8, lr=1e-2, progress=False)
    assert torch.isfinite(model.lin.weight).all()


def test_double_quantisation_of_constants_near_float32_max_stays_finite():
    top = torch.finfo(torch.float32).max
    absmax = torch.tensor([top, top * 0.99, top * 0.5, 1.0])
    from minilora.quant import dequantize_absmax

    back = dequantize_absmax(quantize_absmax(absmax))
    assert torch.isfinite(back).all()
    # the 8-bit error is relative to the block's scale (~top/2), not to each constant
    assert float((back.double() - absmax.double()).abs().max()) <= 0.02 * top


def test_a_nan_valence_row_names_the_file_and_line(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("id\tvalence\ttext\n1\t1.5\tgood\n2\tnan\tbad\n")
    with pytest.raises(ValueError, match=r"x\.tsv:3: valence"):
        read_tsv(f)
    f.write_text("id\tvalence\ttext\n1\tn/a\tgood\n")
    with pytest.raises(ValueError, match=r"x\.tsv:2: valence 'n/a' is not a number"):
        read_tsv(f)
    f.write_text("id\tvalence\ttext\n1\t1.5\n")
    with pytest.raises(ValueError, match=r"x\.tsv:2: expected 3 tab-separated fields"):
        read_tsv(f)


# ---- family 3: containers are validated in one place ------------------------------------

def test_dequantize_rejects_inconsistent_quantized_tensor():
    with pytest.raises(ValueError, match="packed must hold"):
        dataclasses.replace(Q, packed=Q.packed[:-1])
    assert torch.equal(dequantize(dataclasses.replace(Q)), dequantize(Q))  # a consistent copy is fine


# ---- family 4: LoRA that cannot train or cannot be undone --------------------------------

def test_unmerge_restores_w0_even_if_b_was_edited_while_merged():
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    w0 = base.weight.detach().clone()
    layer = LoRALinear(base, r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
    layer.merge()
    with torch.no_grad():
        layer.lora_B.mul_(3.0)
        layer.lora_A.data.add_(1.0)  # .data has its own version counter: caught too
    layer.unmerge()
    torch.testing.assert_close(layer.weight, w0, atol=1e-6, rtol=0)


def test_backward_through_a_merged_layer_says_it_is_merged():
    layer = LoRALinear(nn.Linear(4, 3), r=2, alpha=2)
    layer.merge()
    with pytest.raises(RuntimeError, match="merged"):
        layer(torch.randn(2, 4)).sum().backward()
    with torch.no_grad():
        assert layer(torch.randn(2, 4)).shape == (2, 3)  # inference is unaffected


def test_lora_parameter_count_refuses_what_apply_lora_refuses():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="r"):
        apply_lora(model, ("0",), r=3)
    with pytest.raises(ValueError, match="r"):
        lora_parameter_count(model, ("0",), 3)


# ---- family 8: optimizer state ------------------------------------------------------------

def test_adamw_refuses_a_torch_state_with_amsgrad_instead_of_ignoring_it():
    p = nn.Parameter(torch.randn(3, 2))
    p.grad = torch.ones_like(p)
    reference = torch.optim.AdamW([p], amsgrad=True)
    reference.step()
    ours = AdamW([p])
    with pytest.raises(ValueError, match="amsgrad"):
        ours.load_state_dict(reference.state_dict())
    assert not ours.state  # nothing was loaded


# ---- family 9: estimators ------------------------------------------------------------------

def test_measured_step_timeline_on_cpu_says_it_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="step_timeline"):
        measured_step_timeline(nn.Linear(2, 2), {}, AdamW(nn.Linear(2, 2).parameters()))


def test_finetune_memory_never_reports_more_trainable_than_total_parameters():
    for shape in ("7B", "65B"):
        for method in ("lora", "qlora"):
            est = finetune_memory(shape, method, r=64)
            assert 0 < est["trainable"] < est["parameters"]
            assert all(v >= 0 for k, v in est.items() if isinstance(v, float))


def test_json_config_errors_name_the_file(tmp_path):
    from minilora.lora import read_adapter

    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "adapter_config.json").write_text("[]")
    with pytest.raises(ValueError, match="adapter_config.json"):
        read_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": None}))
    with pytest.raises(ValueError, match=r"lora_alpha=None in .*adapter_config.json"):
        read_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 8}))
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        read_adapter(tmp_path)


# ---- family 5: file operations are all-or-nothing ----------------------------------------

class ThreeLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.classifier = nn.Linear(8, 2)

    def forward(self, x):
        return self.classifier(self.v(self.k(self.q(x))))


def adapter_model(seed=0, alpha=8.0):
    torch.manual_seed(seed)
    model = ThreeLayers()
    apply_lora(model, ("q", "k", "v"), r=2, alpha=alpha)
    with torch.no_grad():
        for layer in (model.q, model.k, model.v):
            layer.lora_B.normal_()
    return model


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, type(model.q).__name__


def same(model, snap):
    state, kind = snap
    now = model.state_dict()
    return type(model.q).__name__ == kind and state.keys() == now.keys() and all(
        torch.equal(state[k], now[k]) for k in state)


def edit_adapter(folder, tensors_edit=None, config_edit=None):
    from safetensors.torch import load_file, save_file

    if tensors_edit is not None:
        tensors = load_file(str(folder / "adapter_model.safetensors"))
        tensors_edit(tensors)
        save_file(tensors, str(folder / "adapter_model.safetensors"))
    if config_edit is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        config_edit(config)
        (folder / "adapter_config.json").write_text(json.dumps(config))


def test_load_adapter_leaves_a_plain_model_untouched_when_a_late_pair_has_rank_0(tmp_path):
    from minilora.lora import save_adapter

    save_adapter(adapter_model(), tmp_path / "a")

    def rank0(t):
        t["base_model.model.v.lora_A.weight"] = torch.zeros(0, 8)
        t["base_model.model.v.lora_B.weight"] = torch.zeros(8, 0)

    edit_adapter(tmp_path / "a", tensors_edit=rank0)
    plain = ThreeLayers()
    before = snapshot(plain)
    from minilora.lora import load_adapter

    with pytest.raises(ValueError, match="rank 0"):
        load_adapter(plain, tmp_path / "a")
    assert same(plain, before)


@pytest.mark.parametrize("edit, match", [
    ({"lora_alpha": None}, "lora_alpha"),
    ({"lora_alpha": 0}, "lora_alpha"),
    ({"lora_dropout": 2}, "lora_dropout"),
    ({"use_rslora": "yes"}, "use_rslora"),
    ({"alpha_pattern": {"q": "big"}}, "alpha_pattern"),
    ({"peft_type": "LOHA"}, "peft_type"),
])
def test_load_adapter_refuses_a_bad_config_before_changing_the_model(tmp_path, edit, match):
    from minilora.lora import load_adapter, save_adapter

    save_adapter(adapter_model(), tmp_path / "a")
    edit_adapter(tmp_path / "a", config_edit=lambda c: c.update(edit))
    model = ThreeLayers()
    before = snapshot(model)
    with pytest.raises(ValueError, match=match):
        load_adapter(model, tmp_path / "a")
    assert same(model, before)


def test_a_nan_adapter_is_refused_by_a_merged_and_by_a_plain_model(tmp_path):
    from minilora.lora import load_adapter, save_adapter

    save_adapter(adapter_model(), tmp_path / "a")
    edit_adapter(tmp_path / "a", tensors_edit=lambda t: t["base_model.model.k.lora_B.weight"].fill_(NAN))
    merged = adapter_model(seed=1)
    for layer in (merged.q, merged.k, merged.v):
        layer.merge()
    for model in (merged, ThreeLayers()):
        before = snapshot(model)
        with pytest.raises(ValueError, match="finite"):
            load_adapter(model, tmp_path / "a")
        assert same(model, before)
    assert merged.q.merged and merged.k.merged


def test_save_adapter_interrupted_between_files_leaves_the_old_adapter(tmp_path, monkeypatch):
    from pathlib import Path

    from minilora.lora import load_adapter, save_adapter

    folder = tmp_path / "a"
    old = adapter_model(seed=1, alpha=4.0)
    save_adapter(old, folder)
    new = adapter_model(seed=2, alpha=8.0)
    real_write_text = Path.write_text

    def fail_on_config(self, *args, **kw):
        if self.name == "adapter_config.json":
            raise OSError("disk full (simulated)")
        return real_write_text(self, *args, **kw)

    monkeypatch.setattr(Path, "write_text", fail_on_config)
    with pytest.raises(OSError, match="simulated"):
        save_adapter(new, folder)
    monkeypatch.undo()
    fresh = ThreeLayers()
    load_adapter(fresh, folder)  # the old adapter, whole: old tensors with the old alpha
    assert fresh.q.scaling == old.q.scaling == 2.0
    assert torch.equal(fresh.q.lora_B, old.q.lora_B)
    assert not list(tmp_path.glob(".a.*"))  # no temp folder left behind


def test_adapter_files_honour_the_umask(tmp_path):
    import os
    import stat

    from minilora.lora import save_adapter

    old = os.umask(0o022)
    try:
        save_adapter(adapter_model(), tmp_path / "a")
    finally:
        os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "a").iterdir()}
    assert modes == {"adapter_config.json": 0o644, "adapter_model.safetensors": 0o644}
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755


@pytest.mark.parametrize("content", [b"", b"\x80\x04K\x01.", b"{\"a\": 1", b"\x00" * 7])
def test_an_unreadable_weights_file_is_named_in_the_error(tmp_path, content):
    from minilora.lora import load_adapter, save_adapter

    save_adapter(adapter_model(), tmp_path / "a")
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(content)
    with pytest.raises(ValueError, match="adapter_model.safetensors"):
        load_adapter(ThreeLayers(), tmp_path / "a")


def test_save_adapter_refuses_nan_weights(tmp_path):
    from minilora.lora import save_adapter

    model = adapter_model()
    with torch.no_grad():
        model.v.lora_A[0, 0] = NAN
    with pytest.raises(ValueError, match="non-finite"):
        save_adapter(model, tmp_path / "a")
    assert not (tmp_path / "a").exists()
