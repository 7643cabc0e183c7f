"""Save and load AdaLoRA adapters in peft's "ADALORA" folder format (either library reads the other's).

``minilora.save_adapter`` / ``minilora.load_adapter`` hand AdaLoRA models and folders to this
module (it registers itself with ``minilora.lora.peft_format``). The folder holds:

* ``adapter_model.safetensors``: ``base_model.model.<module>.lora_A`` (r_kept × d_in),
  ``.lora_E`` (r_kept × 1), ``.lora_B`` (d_out × r_kept): only the kept triplets, so a pruned
  adapter is smaller on disk; plus the extra trained modules (the ``classifier`` head);
* ``adapter_config.json``: ``peft_type="ADALORA"``, ``init_r`` (= ranknum, the scale's
  denominator), ``target_r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` and
  ``rank_pattern`` = ``{"<module>.lora_E": [kept?] × init_r}``, from which peft rebuilds each
  layer at its kept rank before loading the sliced tensors.

peft's config refuses to load without a schedule (``total_step`` ≥ 1, ``tinit < total_step −
tfinal``); the schedule is a training setting, not part of the adapter, so the file carries
the smallest valid one (``total_step=1, tinit=tfinal=0``) unless ``schedule`` is given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_folder
from ..lora import peft_format as lora_format
from ..lora import replace_module
from .layer import SVDLinear, svd_layers

PREFIX = lora_format.PREFIX


def _check_path(model, path):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, Path)) or not str(path):
        raise TypeError(f"path must be a non-empty str or pathlib.Path, got {path!r}")
    return Path(path)


def save_adalora(
    model: nn.Module, path, extra=("classifier",), base_model_name_or_path=None, schedule: dict | None = None
) -> Path:
    """Write the SVDLinear layers of ``model`` (kept triplets only) and the ``extra`` modules as a
    peft AdaLoRA folder; ``peft.PeftModel.from_pretrained(base, path)`` gives the same outputs.
    ``schedule``: optional ``{"tinit", "tfinal", "total_step", "deltaT", "target_r"}`` to record."""
    path = _check_path(model, path)
    layers = svd_layers(model)
    if not layers:
        raise ValueError("model has no SVDLinear layer: nothing to save (call apply_adalora first)")
    for field, get in (
        ("alpha", lambda m: m.alpha),
        ("ranknum", lambda m: m.ranknum),
        ("dropout", lambda m: getattr(m.dropout, "p", 0.0)),
    ):
        values = {get(m) for m in layers.values()}
        if len(values) > 1:
            raise ValueError(
                f"the SVDLinear layers use different {field} values {sorted(values)}; "
                "peft's AdaLoRA config stores one"
            )
    first = next(iter(layers.values()))
    extras = lora_format._extra_modules(model, extra)
    tensors, pattern = {}, {}
    for name, layer in layers.items():
        keep = layer.rank_mask
        tensors[f"{PREFIX}{name}.lora_A"] = layer.lora_A[keep]
        tensors[f"{PREFIX}{name}.lora_E"] = layer.lora_E[keep]
        tensors[f"{PREFIX}{name}.lora_B"] = layer.lora_B[:, keep]
        # a pattern over the initial r triplets; a layer already loaded at a smaller rank pads with False
        pattern[f"{name}.lora_E"] = keep.tolist() + [False] * (layer.ranknum - layer.r)
    for name in extras:
        for pname, p in model.get_submodule(name).named_parameters():
            tensors[f"{PREFIX}{name}.{pname}"] = p
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"refusing to save non-finite weights (NaN/inf) in {bad[:3]}")
    pruned = any(not all(v) for v in pattern.values())
    head_saved = any(n.rpartition(".")[2] in ("classifier", "score") for n in extras)
    seq_cls = type(model).__name__.endswith("ForSequenceClassification") and head_saved
    kept = [sum(v) for v in pattern.values()]
    config = {
        "peft_type": "ADALORA",
        "task_type": "SEQ_CLS" if seq_cls else None,
        "base_model_name_or_path": base_model_name_or_path,
        "init_r": first.ranknum,
        "target_r": round(sum(kept) / len(kept)),
        "lora_alpha": first.alpha,
        "lora_dropout": getattr(first.dropout, "p", 0.0),
        "target_modules": sorted(layers),
        "modules_to_save": extras or None,
        "rank_pattern": pattern if pruned else None,
        "tinit": 0,
        "tfinal": 0,
        "total_step": 1,
        "deltaT": 1,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    config.update(schedule or {})
    st = lora_format._safetensors()
    with atomic_folder(
        path, replaces=(lora_format.CONFIG_NAME, lora_format.WEIGHTS_NAME, "README.md")
    ) as tmp:
        st.save_file(tensors, str(tmp / lora_format.WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / lora_format.CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return path


def _check_config(config: dict, file) -> tuple[int, float, float, dict]:
    """``(init_r, alpha, dropout, rank_pattern)`` from an ADALORA config, or ValueError naming the field."""

    def bad(key, want):
        raise ValueError(f"{key}={config.get(key)!r} in {file}: {want}")

    init_r = config.get("init_r", 12)
    if isinstance(init_r, bool) or not isinstance(init_r, int) or init_r < 1:
        bad("init_r", "must be an int >= 1")
    alpha = config.get("lora_alpha", 8)
    if not lora_format._is_number(alpha) or alpha == 0:
        bad("lora_alpha", "must be a finite non-zero number")
    dropout = config.get("lora_dropout", 0.0)
    if not lora_format._is_number(dropout) or not 0 <= dropout < 1:
        bad("lora_dropout", "must be a number in [0, 1)")
    for key, ok in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none")):
        if config.get(key, ok) != ok:
            bad(key, f"is not supported (only {ok!r})")
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict) or not all(
        isinstance(v, list) and len(v) == init_r and all(isinstance(b, bool) for b in v)
        for v in pattern.values()
    ):
        bad("rank_pattern", f"must map '<module>.lora_E' to a list of {init_r} booleans")
    return init_r, float(alpha), float(dropout), pattern


def load_adalora(model: nn.Module, path) -> list[str]:
    """Load a peft AdaLoRA folder into ``model``; returns the adapted module names.

    Each target (a plain ``nn.Linear`` or an SVDLinear) becomes an SVDLinear at the stored
    (kept) rank with ``ranknum = init_r``, so its output is exactly the saved model's. Every
    key, shape and value is checked before anything changes; a misfit raises ValueError
    listing each problem.
    """
    path = _check_path(model, path)
    for f in (lora_format.CONFIG_NAME, lora_format.WEIGHTS_NAME):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f} not found: path must be an adapter folder (save_adapter)")
    config = lora_format._read_config(path / lora_format.CONFIG_NAME)
    if config.get("peft_type") != "ADALORA":
        raise ValueError(f"peft_type={config.get('peft_type')!r} in {path}: must be 'ADALORA'")
    init_r, alpha, dropout, pattern = _check_config(config, path / lora_format.CONFIG_NAME)
    tensors = {
        k.removeprefix(PREFIX): v
        for k, v in lora_format._read_tensors(path / lora_format.WEIGHTS_NAME).items()
    }
    triplets, others = {}, {}
    for key, t in tensors.items():
        m = re.fullmatch(r"(.+)\.lora_([AEB])", key)
        if m:
            triplets.setdefault(m[1], {})[m[2]] = t
        else:
            others[key] = t
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    problems, ready = [], {}
    for name, aeb in triplets.items():
        mod = modules.get(name)
        if set(aeb) != set("AEB"):
            problems.append(f"{PREFIX}{name}: needs lora_A, lora_E and lora_B, has {sorted(aeb)}")
        elif not isinstance(mod, nn.Linear | SVDLinear):
            problems.append(f"{PREFIX}{name}.lora_A: the model has no Linear module {name}")
        else:
            r = aeb["A"].shape[0] if aeb["A"].dim() == 2 else -1
            d_out, d_in = mod.weight.shape
            want = {"A": (r, d_in), "E": (r, 1), "B": (d_out, r)}
            kept = sum(pattern.get(f"{name}.lora_E", [True] * init_r))
            dtype = mod.weight.dtype
            if not 0 <= r <= min(init_r, d_in, d_out):
                problems.append(f"{PREFIX}{name}.lora_A: rank {r} must be in [0, min(init_r, d_in, d_out)]")
            elif r != kept:
                problems.append(
                    f"{PREFIX}{name}.lora_A: rank {r} in the tensors, {kept} kept in rank_pattern"
                )
            elif any(tuple(aeb[k].shape) != want[k] for k in "AEB"):
                problems.append(
                    f"{PREFIX}{name}: shapes {[tuple(aeb[k].shape) for k in 'AEB']} in the "
                    f"adapter, {[want[k] for k in 'AEB']} in the model"
                )
            elif not all(
                aeb[k].is_floating_point() and bool(torch.isfinite(aeb[k].to(dtype)).all()) for k in "AEB"
            ):
                problems.append(f"{PREFIX}{name}: values must be finite in the model's {dtype}")
            else:
                ready[name] = {k: aeb[k].to(dtype) for k in "AEB"}
    for name in svd_layers(model):
        if name not in triplets:
            problems.append(f"{PREFIX}{name}.lora_A: the model has this AdaLoRA layer, the adapter does not")
    for key, t in others.items():
        if key not in params:
            problems.append(f"{PREFIX}{key}: not a parameter of the model")
        elif params[key].shape != t.shape or not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            problems.append(
                f"{PREFIX}{key}: shape {tuple(t.shape)} (finite floats needed), "
                f"{tuple(params[key].shape)} in the model"
            )
    if problems:
        raise ValueError(
            f"adapter {path} does not fit the model; mismatched keys:\n  " + "\n  ".join(problems)
        )
    with torch.no_grad():
        for name, aeb in ready.items():
            mod = modules[name]
            if isinstance(mod, SVDLinear):
                mod.unmerge()
                mod = mod.base_layer
            layer = SVDLinear(mod, r=aeb["A"].shape[0], alpha=alpha, dropout=dropout, ranknum=init_r)
            layer.lora_A.copy_(aeb["A"])
            layer.lora_E.copy_(aeb["E"])
            layer.lora_B.copy_(aeb["B"])
            replace_module(model, name, layer)
        for key, t in others.items():
            params[key].copy_(t)
    return list(ready)


class _AdaLoRAFormat:
    """What ``minilora.lora.save_adapter`` / ``load_adapter`` call for AdaLoRA models and folders."""

    layers = staticmethod(svd_layers)
    load = staticmethod(load_adalora)

    @staticmethod
    def save(model, path, extra=("classifier",), base_model_name_or_path=None):
        return save_adalora(model, path, extra=extra, base_model_name_or_path=base_model_name_or_path)


lora_format.register_adapter_format("ADALORA", _AdaLoRAFormat)
