"""minilora.memory.estimate: the paper-scale memory formula (LLaMA 7B-65B; full, LoRA, QLoRA)
against transformers' and peft's parameter counts and the QLoRA paper's claims."""

import pytest

from minilora.memory.estimate import GB, LLAMA, NF4_DQ_BITS, LlamaShape, finetune_memory, paper_claims

TINY_LLAMA = LlamaShape("tiny", vocab=100, d_model=32, n_layers=2, d_ff=88, n_heads=4)


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                        intermediate_size=88, num_attention_heads=4, num_key_value_heads=4,
                                        tie_word_embeddings=False))


def test_llama_parameter_counts_match_transformers():
    assert TINY_LLAMA.parameter_counts()["total"] == sum(p.numel() for p in tiny_llama().parameters())


def test_llama_7b_and_65b_have_their_published_sizes():
    assert round(LLAMA["65B"].parameter_counts()["total"] / 1e9, 1) == 65.3
    assert round(LLAMA["7B"].parameter_counts()["total"] / 1e9, 2) == 6.74


def test_lora_parameter_count_matches_peft():
    peft = pytest.importorskip("peft", reason="peft is the reference (installed by make test)")

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=8, target_modules=targets))
    assert TINY_LLAMA.lora_parameters(r=8) == sum(p.numel() for p in lora.parameters() if p.requires_grad)


def test_paper_claims_are_reproduced_by_the_formula():
    claims = paper_claims()
    assert claims["full_exceeds_780"] and claims["qlora_below_48"]


def test_full_finetune_costs_twelve_bytes_per_parameter():
    full = finetune_memory("65B", "full")
    # 2 + 2 + 8 bytes/param
    assert full["weights"] + full["gradients"] + full["optimizer states"] == 12 * full["parameters"]


def test_nf4_with_double_quant_costs_4_127_bits():
    assert NF4_DQ_BITS == pytest.approx(4.127, abs=1e-3)


def test_qlora_65b_weights_take_30_to_40_gb_and_train_under_1_3_percent():
    n = finetune_memory("65B", "full")["parameters"]
    q = finetune_memory("65B", "qlora")
    assert 30 * GB < q["weights"] < 40 * GB and q["trainable"] / n < 0.013


def test_activations_grow_linearly_with_sequence_length():
    base = finetune_memory("7B", "qlora", seq_len=512)
    longer = finetune_memory("7B", "qlora", seq_len=4096)
    assert longer["activations"] > 8 * base["activations"] * 0.99


def test_checkpointing_lowers_activation_memory():
    base = finetune_memory("7B", "qlora", seq_len=512)
    no_ckpt = finetune_memory("7B", "qlora", seq_len=512, checkpointing=False)
    assert no_ckpt["activations"] > base["activations"]


def test_paging_moves_the_optimizer_states_to_the_host():
    base = finetune_memory("7B", "qlora", seq_len=512)
    paged = finetune_memory("7B", "qlora", paged=True)
    assert paged["optimizer states"] == 0 and paged["host (paged states)"] == base["optimizer states"]


def test_paging_lowers_the_gpu_total_by_the_optimizer_states():
    base = finetune_memory("7B", "qlora", seq_len=512)
    paged = finetune_memory("7B", "qlora", paged=True)
    assert base["total"] - paged["total"] == pytest.approx(base["optimizer states"])


@pytest.mark.parametrize("kwargs, name", [(dict(method="adam"), "method"), (dict(shape="70B"), "shape"),
                                          (dict(seq_len=0), "seq_len"), (dict(batch=1.5), "batch"),
                                          (dict(r=True), "r")])
def test_finetune_memory_rejects_a_bad_argument_naming_it(kwargs, name):
    args = {"shape": "7B", **kwargs}
    with pytest.raises(ValueError, match=name):
        finetune_memory(**args)
