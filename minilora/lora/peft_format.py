"""Save and load LoRA adapters in peft's folder format, so either library reads the other's.

A folder holds two files, written as one unit (``minilora.files.atomic_folder``: both are
written into a temp folder that then replaces the old one, so a reader never sees new
weights with an old config):

* ``adapter_model.safetensors``: ``base_model.model.<module>.lora_A.weight`` (r × d_in),
  ``base_model.model.<module>.lora_B.weight`` (d_out × r) per adapted layer, plus the full
  tensors of the extra trained modules (peft's ``modules_to_save``, e.g. ``classifier``);
* ``adapter_config.json``: ``peft_type="LORA"``, ``r``, ``lora_alpha``, ``lora_dropout``,
  ``use_rslora``, ``target_modules`` (the exact module names), ``modules_to_save`` and, when
  layers differ, ``rank_pattern``/``alpha_pattern``.

Only the adapter is stored (r·(d_in + d_out) numbers per layer), never the base weights:
this is the storage argument of LoRA §4.2 (one base model, many small task adapters).
"""

from __future__ import annotations

import collections
import json
import math
import re
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_folder
from .inject import lora_layers, match_modules, replace_module
from .layer import LoRALinear, is_quantized_base, lora_scaling

PREFIX = "base_model.model."
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"

# Other adapter families save and load their own peft format through these two functions:
# ``ADAPTER_FORMATS[peft_type]`` has ``.layers(model) -> dict``, ``.save(model, path, extra,
# base_model_name_or_path)`` and ``.load(model, path)``; minilora.adalora registers "ADALORA".
# (A registry, so that lora/ does not import the packages built on it.)
ADAPTER_FORMATS: dict[str, object] = {}


def register_adapter_format(peft_type: str, fmt) -> None:
    """Let ``save_adapter``/``load_adapter`` handle a model's ``fmt.layers`` / a folder whose
    config says ``peft_type`` with ``fmt.save`` / ``fmt.load``."""
    ADAPTER_FORMATS[peft_type] = fmt


def _registered_format(path):
    """The registered format named by the folder's ``peft_type``; None for LoRA or unreadable
    folders (``read_adapter`` then reports what is wrong)."""
    try:
        config = _read_config(Path(path) / CONFIG_NAME)
    except (OSError, TypeError, ValueError):
        return None
    return ADAPTER_FORMATS.get(config.get("peft_type"))


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as e:  # pragma: no cover - a dependency of transformers
        raise ImportError("adapter files need the package safetensors: pip install safetensors") from e
    return st


def _most_common(values):
    return collections.Counter(values).most_common(1)[0][0]


def _extra_modules(model, extra) -> list[str]:
    """Outermost modules matching ``extra`` (peft's modules_to_save); none for ``()``/None."""
    if not extra:
        return []
    return [n for n, _ in match_modules(model, extra, "extra", outermost=True)]


def save_adapter(model: nn.Module, path, extra=("classifier",), base_model_name_or_path=None) -> Path:
    """Write the LoRA layers of ``model`` (and the ``extra`` modules) as a peft adapter folder.

    ``peft.PeftModel.from_pretrained(base, path)`` loads it with identical outputs. Works
    on merged models too (A and B are kept). The two files are written as one unit
    (``atomic_folder``). Non-finite weights are refused (the file could not be loaded back).
    Returns the folder path.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, Path)) or not str(path):
        raise TypeError(f"path must be a non-empty str or pathlib.Path, got {path!r}")
    if base_model_name_or_path is not None and not isinstance(base_model_name_or_path, str):
        raise TypeError(f"base_model_name_or_path must be a str or None, got {base_model_name_or_path!r}")
    layers = lora_layers(model)
    if not layers:
        for fmt in ADAPTER_FORMATS.values():
            if fmt.layers(model):
                return fmt.save(model, path, extra=extra, base_model_name_or_path=base_model_name_or_path)
        raise ValueError("model has no LoRALinear layer: nothing to save (call apply_lora first)")
    path = Path(path)
    extras = _extra_modules(model, extra)
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A
        tensors[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B
    for name in extras:
        for pname, p in model.get_submodule(name).named_parameters():
            tensors[f"{PREFIX}{name}.{pname}"] = p
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"refusing to save non-finite weights (NaN/inf) in {bad[:3]}")
    for field in ("dropout", "rslora"):
        values = {getattr(layer.dropout, "p", 0.0) if field == "dropout" else layer.rslora
                  for layer in layers.values()}
        if len(values) > 1:
            raise ValueError(f"the LoRA layers use different {field} values {sorted(values)}; "
                             "peft's config stores one")
    r = _most_common(layer.r for layer in layers.values())
    alpha = _most_common(layer.alpha for layer in layers.values())
    first = next(iter(layers.values()))
    # peft's SEQ_CLS task always expects the head in the file: claim it only when it is there
    head_saved = any(n.rpartition(".")[2] in ("classifier", "score") for n in extras)
    seq_cls = type(model).__name__.endswith("ForSequenceClassification") and head_saved
    config = {
        "peft_type": "LORA",
        "task_type": "SEQ_CLS" if seq_cls else None,
        "base_model_name_or_path": base_model_name_or_path,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": getattr(first.dropout, "p", 0.0),
        "use_rslora": first.rslora,
        "init_lora_weights": True if first.init == "kaiming" else "gaussian",
        "target_modules": sorted(layers),
        "modules_to_save": extras or None,
        "rank_pattern": {n: layer.r for n, layer in layers.items() if layer.r != r},
        "alpha_pattern": {n: layer.alpha for n, layer in layers.items() if layer.alpha != alpha},
        "bias": "none",
        "fan_in_fan_out": False,
        "use_dora": False,
        "inference_mode": True,
    }
    st = _safetensors()
    with atomic_folder(path, replaces=(CONFIG_NAME, WEIGHTS_NAME, "README.md")) as tmp:
        st.save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return path


def _pattern_value(pattern: dict, name: str, default):
    """peft's rule for rank_pattern/alpha_pattern: key ``k`` applies if ``name`` ends in ``k``."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def _read_config(file: Path) -> dict:
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or not config:
        raise ValueError(f"{file} must hold a non-empty JSON object (peft's adapter config), "
                         f"got {type(config).__name__}")
    return config


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = _safetensors().load_file(str(file))
    except Exception as e:  # empty, truncated, a pickle (.bin) renamed, ...
        raise ValueError(f"{file} is not a readable safetensors file ({type(e).__name__}: {e}); adapter "
                         "weights must be saved with save_adapter or peft's save_pretrained") from None
    if not tensors:
        raise ValueError(f"{file} holds no tensors")
    return tensors


def _is_number(v) -> bool:
    """A finite real JSON number (an int beyond the float range is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _check_config(config: dict, file: Path) -> None:
    """Every field load_adapter reads has the type and range peft writes, or ValueError naming it."""
    def bad(key, want):
        raise ValueError(f"{key}={config.get(key)!r} in {file}: {want}")

    if config.get("peft_type") != "LORA":
        bad("peft_type", "must be 'LORA'")
    for key, ok in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none"), ("lora_bias", False)):
        if config.get(key, ok) != ok:
            bad(key, f"is not supported (only {ok!r})")
    alpha = config.get("lora_alpha", 8)
    if not _is_number(alpha) or alpha == 0:
        bad("lora_alpha", "must be a finite non-zero number")
    dropout = config.get("lora_dropout", 0.0)
    if not _is_number(dropout) or not 0 <= dropout < 1:
        bad("lora_dropout", "must be a number in [0, 1)")
    if not isinstance(config.get("use_rslora", False), bool):
        bad("use_rslora", "must be true or false")
    r = config.get("r", 8)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        bad("r", "must be an int >= 1")
    for key in ("rank_pattern", "alpha_pattern"):
        pattern = config.get(key) or {}
        if key == "rank_pattern":
            ok, want = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1), "int >= 1"
        else:
            ok, want = (lambda v: _is_number(v) and v != 0), "finite non-zero number"
        if not isinstance(pattern, dict) or not all(ok(v) for v in pattern.values()):
            bad(key, f"must be an object of module name → {want}")
        for k in pattern:
            try:
                re.compile(k)
            except re.error as e:
                bad(key, f"its key {k!r} is not a valid regular expression ({e})")


def read_adapter(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, tensors)`` of an adapter folder, keys without peft's ``base_model.model.`` prefix.

    Missing files raise FileNotFoundError; unreadable or inconsistent ones raise ValueError
    naming the file and the field.
    """
    if not isinstance(path, (str, Path)) or not str(path):
        raise TypeError(f"path must be an adapter folder (a non-empty str or pathlib.Path), got {path!r}")
    path = Path(path)
    for f in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f} not found: path must be an adapter folder (save_adapter)")
    config = _read_config(path / CONFIG_NAME)
    _check_config(config, path / CONFIG_NAME)
    tensors = _read_tensors(path / WEIGHTS_NAME)
    return config, {k.removeprefix(PREFIX): v for k, v in tensors.items()}


def _split_pairs(tensors: dict) -> tuple[dict, dict]:
    """``({module: {"A": t, "B": t}}, {parameter name: t})``: LoRA pairs and full tensors."""
    pairs, others = {}, {}
    for key, t in tensors.items():
        m = re.fullmatch(r"(.+)\.lora_([AB])\.weight", key)
        if m:
            pairs.setdefault(m[1], {})[m[2]] = t
        else:
            others[key] = t
    return pairs, others


def _problems(model: nn.Module, pairs: dict, others: dict, config: dict) -> list[str]:
    """Every way the adapter's tensors (and α, r of the config) do not fit ``model``, one line
    per key; values are checked in the dtype they will have in the model."""
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    problems = []
    for name, ab in pairs.items():
        key = f"{PREFIX}{name}.lora_{'A' if 'A' not in ab else 'B'}.weight"
        mod = modules.get(name)
        if set(ab) != {"A", "B"}:
            problems.append(f"{key}: missing from the adapter")
            continue
        if mod is None:
            problems.append(f"{PREFIX}{name}.lora_A.weight: the model has no module {name}")
            continue
        if not isinstance(mod, nn.Linear | LoRALinear) and not is_quantized_base(mod):
            problems.append(f"{PREFIX}{name}.lora_A.weight: {name} is a {type(mod).__name__}, not a Linear")
            continue
        r = ab["A"].shape[0] if ab["A"].dim() == 2 else -1
        if not 1 <= r <= min(mod.in_features, mod.out_features):
            problems.append(f"{PREFIX}{name}.lora_A.weight: rank {r} must be in [1, "
                            f"{min(mod.in_features, mod.out_features)}]")
            continue
        r_config = _pattern_value(config.get("rank_pattern") or {}, name, config.get("r", r))
        if r_config != r:
            problems.append(f"{PREFIX}{name}.lora_A.weight: rank {r} in the tensors, {r_config} in "
                            "the config")
            continue
        want = {"A": (r, mod.in_features), "B": (mod.out_features, r)}
        dtype = mod.weight_dtype if is_quantized_base(mod) else mod.weight.dtype
        if isinstance(mod, LoRALinear):
            want = {"A": tuple(mod.lora_A.shape), "B": tuple(mod.lora_B.shape)}
            dtype = mod.lora_A.dtype
        cast = {}
        for k in "AB":
            t = ab[k]
            if tuple(t.shape) != want[k]:
                problems.append(f"{PREFIX}{name}.lora_{k}.weight: shape {tuple(t.shape)} in the "
                                f"adapter, {want[k]} in the model")
            elif not t.is_floating_point() or not bool(torch.isfinite(t.to(dtype)).all()):
                problems.append(f"{PREFIX}{name}.lora_{k}.weight: must hold values that are finite in "
                                f"the model's {dtype}")
            else:
                cast[k] = t.to(dtype)
        if len(cast) == 2:
            alpha = _pattern_value(config.get("alpha_pattern") or {}, name, config.get("lora_alpha", 8))
            scaling = lora_scaling(alpha, r, config.get("use_rslora", False))
            if not bool(torch.isfinite((cast["B"] @ cast["A"]) * scaling).all()):
                problems.append(f"{PREFIX}{name}: the update (α/r)·B A overflows the model's {dtype} "
                                f"(α = {alpha})")
    for name in lora_layers(model):
        if name not in pairs:
            problems.append(f"{PREFIX}{name}.lora_A.weight: the model has this LoRA layer, "
                            "the adapter does not")
    for key, t in others.items():
        if key not in params:
            problems.append(f"{PREFIX}{key}: not a parameter of the model")
        elif params[key].shape != t.shape:
            problems.append(f"{PREFIX}{key}: shape {tuple(t.shape)} in the adapter, "
                            f"{tuple(params[key].shape)} in the model")
        elif not t.is_floating_point() or not bool(torch.isfinite(t.to(params[key].dtype)).all()):
            problems.append(f"{PREFIX}{key}: must hold values that are finite in the model's "
                            f"{params[key].dtype}")
    return problems


def load_adapter(model: nn.Module, path) -> list[str]:
    """Load a peft-format LoRA adapter into ``model``; returns the adapted module names.

    Plain ``nn.Linear`` targets are wrapped in LoRALinear first (r from the tensors, α,
    dropout and rsLoRA from the config); existing LoRA layers get their A, B and α replaced
    (a merged layer is unmerged, loaded and merged again). Everything is checked before
    anything is changed — the files, the config's fields, every key's shape, rank and
    values (NaN/inf refused) — so a failure leaves the model exactly as it was; a model
    that does not fit raises ValueError naming each mismatched key.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    fmt = _registered_format(path)
    if fmt is not None:
        return fmt.load(model, path)
    config, tensors = read_adapter(path)
    pairs, others = _split_pairs(tensors)
    problems = _problems(model, pairs, others, config)
    if problems:
        raise ValueError(f"adapter {path} does not fit the model; mismatched keys:\n  "
                         + "\n  ".join(problems))

    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    rslora = config.get("use_rslora", False)
    init = "gaussian" if config.get("init_lora_weights") == "gaussian" else "kaiming"
    with torch.no_grad():
        for name, ab in pairs.items():
            alpha = _pattern_value(config.get("alpha_pattern") or {}, name, config.get("lora_alpha", 8))
            layer = modules[name]
            if not isinstance(layer, LoRALinear):
                layer = LoRALinear(layer, r=ab["A"].shape[0], alpha=alpha,
                                   dropout=config.get("lora_dropout", 0.0), init=init, rslora=rslora)
                replace_module(model, name, layer)
            was_merged = layer.merged
            layer.unmerge()
            layer.lora_A.copy_(ab["A"])
            layer.lora_B.copy_(ab["B"])
            layer.alpha, layer.rslora = float(alpha), rslora
            layer.scaling = lora_scaling(alpha, layer.r, rslora)
            if was_merged:
                layer.merge()
        for key, t in others.items():
            params[key].copy_(t)
    return list(pairs)
