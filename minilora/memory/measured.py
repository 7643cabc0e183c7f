"""Memory accounting of one training step, from measured tensor sizes.

A step holds, on the accelerator: the weights W, the optimizer states S (AdamW: m and v,
one of each per trainable number), the activations A that autograd saves in the forward
pass for the backward pass, the gradients G, and the update's temporaries T. Over a step:

    forward block i:   A grows by a_i                     (the spike: A ∝ batch · sequence length)
    backward block i:  A shrinks by a_i, G grows by g_i
    optimizer step:    + T (our AdamW: one √v buffer per update chunk; a group on CUDA, a tensor on CPU)
    zero_grad:         G → 0

Paging (minilora.paged) moves S to host RAM during forward/backward and back for the
update, so the forward/backward peak falls by S. Everything here is *measured*: a_i with
``torch.autograd.graph.saved_tensors_hooks`` (each saved storage counted once, parameters
excluded), g_i from ``.grad`` after a real backward, S from a real AdamW step with lr = 0
(which leaves the weights bit-for-bit unchanged). Not counted: transient buffers inside
an op and the gradient flowing between blocks. The paper-scale estimator is in
``minilora.memory.estimate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..adamw import AdamW, state_bytes
from ..checks import check_choice, check_int

PARTS = ("weights", "optimizer states", "gradients", "activations", "update temporaries")
PHASES = ("forward", "backward", "step")


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages under ``tensors`` (views of one storage count once; None
    entries, e.g. absent gradients, are skipped)."""
    if isinstance(tensors, torch.Tensor):
        tensors = [tensors]
    seen = {}
    for t in tensors:
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors must hold torch.Tensor (or None), got {type(t).__name__}")
        if t is not None and t.untyped_storage().data_ptr():
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def model_bytes(model: nn.Module, optimizer=None) -> dict:
    """Measured bytes: all weights, trainable weights, present ``.grad``s, optimizer state tensors."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    return {"weights": storage_bytes(params),
            "trainable": storage_bytes(p for p in params if p.requires_grad),
            "gradients": storage_bytes(p.grad for p in params),
            "optimizer states": 0 if optimizer is None else state_bytes(optimizer)}


def default_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model cut into blocks in forward order: every element of each ``ModuleList`` (the
    transformer layers) and the modules around them (embeddings, pooler, classifier...)."""
    def has_list(m):
        return any(isinstance(c, nn.ModuleList) for c in m.modules())

    blocks = []

    def walk(module, prefix):
        for name, child in module.named_children():
            if isinstance(child, nn.ModuleList):
                blocks.extend((f"{prefix}{name}.{i}", m) for i, m in enumerate(child))
            elif has_list(child):
                walk(child, f"{prefix}{name}.")
            else:
                blocks.append((prefix + name, child))

    walk(model, "")
    return blocks


@dataclass
class StepMeasurement:
    """Per-block saved-activation and gradient bytes of one forward/backward, in forward order."""

    blocks: list[str]
    activation_bytes: list[int]
    gradient_bytes: list[int]
    weight_bytes: int
    state_bytes: int
    chunk_bytes: list[int] = field(default_factory=list)  # bytes of each AdamW update chunk

    def __post_init__(self):
        if not len(self.blocks) == len(self.activation_bytes) == len(self.gradient_bytes) or not self.blocks:
            raise ValueError("blocks, activation_bytes and gradient_bytes must be non-empty lists of equal "
                             f"length, got {len(self.blocks)}, {len(self.activation_bytes)}, "
                             f"{len(self.gradient_bytes)}")
        for name in ("activation_bytes", "gradient_bytes", "chunk_bytes"):
            for i, v in enumerate(getattr(self, name)):
                check_int(v, f"{name}[{i}]", 0)
        check_int(self.weight_bytes, "weight_bytes", 0)
        check_int(self.state_bytes, "state_bytes", 0)


def measure_step(model: nn.Module, batch: dict, blocks=None) -> StepMeasurement:
    """Run one forward/backward of ``model(**batch).loss`` and one lr = 0 AdamW step, measuring
    what each block saves for backward, its gradients and the optimizer states.

    Saved tensors outside every block go to a last entry ``"(outside blocks)"``; ``.grad`` is
    reset to None afterwards and the weights are unchanged (lr = 0, weight_decay = 0).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(batch, dict) or "labels" not in batch:
        raise ValueError("batch must be a dict of model inputs that includes 'labels' (so the model returns "
                         "a loss), e.g. Encoded.batch(rows)")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameter: a training step would have nothing to measure")
    blocks = default_blocks(model) if blocks is None else list(blocks)
    for i, block in enumerate(blocks):
        if not (isinstance(block, tuple) and len(block) == 2 and isinstance(block[1], nn.Module)):
            raise TypeError(f"blocks[{i}] must be a (name, module) pair, got {block!r}")
    names = [n for n, _ in blocks] + ["(outside blocks)"]
    saved = {n: {} for n in names}
    stack: list[str] = []
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr and ptr not in param_storages and ptr not in seen:
            seen.add(ptr)
            saved[stack[-1] if stack else names[-1]][ptr] = t.untyped_storage().nbytes()
        return t

    def enter(module, args, name):
        stack.append(name)

    def leave(module, args, out):
        stack.pop()  # a forward hook must return None, or it replaces the output

    handles = []
    for name, module in blocks:
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: enter(m, a, name)))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(**batch).loss
    finally:
        for h in handles:
            h.remove()
    for p in model.parameters():
        p.grad = None
    loss.backward()
    grads = [storage_bytes(p.grad for p in m.parameters()) for _, m in blocks]
    grads.append(storage_bytes(p.grad for p in model.parameters()) - sum(grads))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = AdamW(trainable, lr=0.0, weight_decay=0.0)
    opt.step()  # θ − 0·m/denom = θ exactly: states are created and measured, weights untouched
    chunks = [storage_bytes(p.grad for p in chunk) for chunk in opt.update_chunks(trainable)]
    states = model_bytes(model, opt)["optimizer states"]
    for p in model.parameters():
        p.grad = None
    return StepMeasurement(names, [sum(saved[n].values()) for n in names], grads,
                           storage_bytes(model.parameters()), states, chunks)


@dataclass
class Timeline:
    """Memory on the device at each event of one step: ``parts[name][i]`` bytes at event i."""

    events: list[str]
    phases: list[str]
    parts: dict[str, list[int]]
    forward_backward_peak: int | None = None  # measured timelines: the allocator's true peak

    def __post_init__(self):
        n = len(self.events)
        if n == 0 or len(self.phases) != n:
            raise ValueError(f"events and phases must be non-empty lists of equal length, got {n} and "
                             f"{len(self.phases)}")
        bad = sorted(set(self.phases) - set(PHASES))
        if bad:
            raise ValueError(f"phases must be drawn from {PHASES}, got {bad}")
        if not isinstance(self.parts, dict) or not self.parts:
            raise ValueError("parts must be a non-empty dict of name → bytes per event")
        for name, values in self.parts.items():
            if len(values) != n:
                raise ValueError(f"parts[{name!r}] must hold one value per event ({n}), got {len(values)}")
            for i, v in enumerate(values):
                check_int(v, f"parts[{name!r}][{i}]", 0)

    @property
    def totals(self) -> list[int]:
        return [sum(v[i] for v in self.parts.values()) for i in range(len(self.events))]

    @property
    def peak(self) -> int:
        return max(self.totals)

    @property
    def peak_event(self) -> str:
        return self.events[self.totals.index(self.peak)]

    def phase_peak(self, phase: str) -> int:
        """The highest total during ``phase`` (one of the phases this timeline has)."""
        check_choice(phase, "phase", sorted(set(self.phases)))
        return max(t for t, p in zip(self.totals, self.phases) if p == phase)


def step_timeline(m: StepMeasurement, paged=False, paged_chunks=None) -> Timeline:
    """The memory timeline of one steady-state step (states exist from the previous step).

    Without paging the states sit on the device throughout. With ``paged=True`` they are
    paged out before the forward pass and back in for the update, and the update runs one
    paged tensor at a time, so ``paged_chunks`` (bytes of PagedAdamW's update chunks;
    default: the same chunks as AdamW) bound the temporaries.
    """
    if not isinstance(m, StepMeasurement):
        raise TypeError(f"m must be a StepMeasurement (measure_step(...)), got {type(m).__name__}")
    W, S = m.weight_bytes, m.state_bytes
    n = len(m.blocks)
    events, phases, parts = [], [], {k: [] for k in PARTS}

    def add(event, phase, s, g, a, t=0):
        events.append(event)
        phases.append(phase)
        for k, v in zip(PARTS, (W, s, g, a, t)):
            parts[k].append(v)

    s_fb = 0 if paged else S
    add("start", "forward", s_fb, 0, 0)
    for i in range(n):  # forward: each block adds what it saves
        add(f"fwd {m.blocks[i]}", "forward", s_fb, 0, sum(m.activation_bytes[:i + 1]))
    for i in reversed(range(n)):  # backward: block i's saved tensors go, its gradients come
        add(f"bwd {m.blocks[i]}", "backward", s_fb, sum(m.gradient_bytes[i:]), sum(m.activation_bytes[:i]))
    g = sum(m.gradient_bytes)
    temp = max((paged_chunks if paged and paged_chunks else m.chunk_bytes) or [0])
    add("optimizer step", "step", S, g, 0, temp)
    add("zero_grad", "step", s_fb, 0, 0)
    return Timeline(events, phases, parts)


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    return None


class CudaProbe:
    """Reads the CUDA caching allocator: bytes allocated now, and the peak since ``reset()``."""

    def sync(self):
        torch.cuda.synchronize()

    def current(self) -> int:
        return torch.cuda.memory_allocated()

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated()

    def reset(self):
        torch.cuda.reset_peak_memory_stats()


def measured_step_timeline(model: nn.Module, batch: dict, optimizer, page_out=False, blocks=None,
                           probe=None) -> Timeline:
    """The measured device-memory timeline of one real training step (CUDA by default).

    ``probe`` (default ``CudaProbe()``) is read at the start, after each block's forward, when
    the gradient reaches each block's output in backward, at the optimizer step (the step's
    own peak) and after ``zero_grad``: "torch tensors" is what torch allocated, "managed
    states on GPU" the optimizer's managed states last sent to the GPU (minilora.paged).
    With ``page_out=True`` the states are paged out before the forward pass. The allocator's
    true forward/backward peak (between marks too) is kept in ``.forward_backward_peak``.
    """
    if probe is None and not torch.cuda.is_available():
        raise RuntimeError("measured_step_timeline reads the CUDA allocator, and this machine has no CUDA "
                           "GPU: on a CPU use step_timeline(measure_step(model, batch)), the timeline "
                           "computed from measured tensor sizes (or pass probe=...)")
    probe = CudaProbe() if probe is None else probe
    pages = getattr(optimizer, "pages", None)
    blocks = default_blocks(model) if blocks is None else list(blocks)
    events, phases, torch_bytes, managed = [], [], [], []

    def mark(event, phase, value=None):
        events.append(event)
        phases.append(phase)
        torch_bytes.append(probe.current() if value is None else value)
        managed.append(pages.resident_bytes if pages is not None else 0)

    def after_forward(module, args, out, name):
        mark(f"fwd {name}", "forward")
        t = _first_tensor(out)
        if t is not None and t.requires_grad:
            t.register_hook(lambda grad: mark(f"bwd {name}", "backward"))

    handles = [m.register_forward_hook(lambda m, a, o, name=name: after_forward(m, a, o, name))
               for name, m in blocks]
    try:
        optimizer.zero_grad(set_to_none=True)
        if page_out:
            optimizer.page_out()
        probe.sync()
        probe.reset()
        mark("start", "forward")
        model(**batch).loss.backward()
        probe.sync()
        forward_backward_peak = probe.peak()
        probe.reset()
        optimizer.step()
        probe.sync()
        mark("optimizer step", "step", probe.peak())
        optimizer.zero_grad(set_to_none=True)
        mark("zero_grad", "step")
    finally:
        for h in handles:
            h.remove()
    return Timeline(events, phases, {"torch tensors": torch_bytes, "managed states on GPU": managed},
                    forward_backward_peak)
