"""Code tables ("data types") for blockwise quantisation, each derived from its definition.

A k-bit data type here is a table of 2^k (or fewer) real values in [-1, 1]; a stored code is
an index into that table. Tables are built, not copied: NormalFloat from quantiles of N(0, 1)
(QLoRA §3 "4-bit NormalFloat"), FP4 from its sign/exponent/mantissa fields, INT4 as a
uniform grid, the 8-bit dynamic map from its exponent/fraction layout (Dettmers 2015), FP8
E4M3 from the OCP float8 layout. Tests check each against bitsandbytes / torch value for value.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from ..checks import ArgumentTypeError, check_int, check_number

# bitsandbytes' offset. δ = 1 − ½(1/32 + 1/30) = 0.96770833… is this course's reconstruction (it matches
# all 7 shipped digits); neither the QLoRA paper nor bitsandbytes states where the constant comes from.
NF4_OFFSET = 0.9677083


def _check_bits(bits) -> int:
    return check_int(bits, "bits", 2, 8)


def _check_offset(offset) -> float:
    return check_number(offset, "offset", 0.5, 1.0, low_open=True, high_open=True, why=" (a probability)")


def normal_float_levels(bits: int = 4, offset: float = NF4_OFFSET, grid_dtype=torch.float32) -> torch.Tensor:
    """The k-bit NormalFloat table, built the way bitsandbytes ships it (QLoRA §3).

    Asymmetric construction with an exact zero: 2^(k−1) positive levels
    ``Φ⁻¹(linspace(δ, ½, 2^(k−1)+1)[:-1])``, 2^(k−1)−1 negative levels
    ``−Φ⁻¹(linspace(δ, ½, 2^(k−1))[:-1])``, plus 0, all divided by the largest (so the ends
    are −1 and 1). δ = ``offset`` clips the infinite outer quantiles. ``grid_dtype`` is the
    dtype of the linspace grid: bitsandbytes uses float32 (and divides in float32); float64
    computes everything in float64 and rounds once, which moves 10 of the 16 NF4 levels by
    1–6 float32 ulps (Φ⁻¹ amplifies the grid's rounding error by 1/φ(q)). Returns a sorted
    float32 tensor of 2^k values.
    """
    bits, offset = _check_bits(bits), _check_offset(offset)
    if grid_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"grid_dtype must be torch.float32 or torch.float64, got {grid_dtype!r}")
    half = 2 ** (bits - 1)
    grid_pos = torch.linspace(offset, 0.5, half + 1, dtype=grid_dtype)[:-1].double().numpy()
    grid_neg = torch.linspace(offset, 0.5, half, dtype=grid_dtype)[:-1].double().numpy()
    # q = Φ⁻¹(p): quantiles of the standard normal, positive side and (mirrored) negative side
    values = np.sort(np.concatenate([norm.ppf(grid_pos), [0.0], -norm.ppf(grid_neg)]))
    if grid_dtype == torch.float64:  # float64 throughout, one rounding at the end
        levels = torch.tensor(values / values.max(), dtype=torch.float32)
    else:  # bitsandbytes: round the quantiles to float32, then q / max(q) in float32
        levels = torch.tensor(values, dtype=torch.float32)
        levels = levels / levels.max()
    if not bool(torch.isfinite(levels).all()) or torch.unique(levels).numel() != 2**bits:
        raise ValueError(f"offset={offset!r} gives {torch.unique(levels).numel()} distinct finite levels, "
                         f"not 2^bits = {2**bits}: choose an offset further from 0.5 and 1 "
                         "(bitsandbytes' NF4 uses 0.9677083)")
    return levels


def paper_normal_float_levels(bits: int = 4, offset: float = NF4_OFFSET) -> torch.Tensor:
    """The symmetric NormalFloat of the QLoRA paper's equation, for comparison (QLoRA §3).

    ``q_i = ½(Φ⁻¹(p_i) + Φ⁻¹(p_{i+1}))`` for 2^k+1 equally spaced probabilities ``p`` from
    1−δ to δ, normalised to [−1, 1]. The clipping is this course's reading of the paper's Eq. 4:
    its i/(2^k+1) grid has Φ⁻¹(0) = −∞ at the ends and the paper does not say how they are
    avoided; here they are clipped at δ (bitsandbytes' offset). Symmetric, hence with no exact
    zero for an even count of levels. Returns 2^k sorted float32 values.
    """
    bits, offset = _check_bits(bits), _check_offset(offset)
    p = np.linspace(1.0 - offset, offset, 2**bits + 1)
    edges = norm.ppf(p)
    # q_i = ½(Φ⁻¹(p_i) + Φ⁻¹(p_{i+1})): the centre of each equal-probability bin
    centres = 0.5 * (edges[:-1] + edges[1:])
    return torch.tensor(centres / np.abs(centres).max(), dtype=torch.float32)


def nf4_levels() -> torch.Tensor:
    """4-bit NormalFloat: ``normal_float_levels(4, 0.9677083)``, 16 sorted values (QLoRA §3)."""
    return normal_float_levels(4, NF4_OFFSET)


def fp4_levels() -> torch.Tensor:
    """bitsandbytes' FP4 (E2M1) table in bit-pattern order: index = code (QLoRA §3 baseline).

    Code bits ``s e1 e0 m``: sign s, a 2-bit exponent field e and a 1-bit mantissa m, with
    bitsandbytes' exponent convention ``|v| = (1 + m/2)·2^(4−e)`` for e ≥ 1 and a subnormal
    ``|v| = m·2^−4`` for e = 0, i.e. magnitudes 0, 0.0625, 8, 12, 4, 6, 2, 3, divided by the
    largest (12). The table is NOT sorted (code 8 is −0.0); the quantiser sorts it itself.
    """
    values = []
    for code in range(16):
        sign, exponent, mantissa = code >> 3, (code >> 1) & 3, code & 1
        # subnormal m·2^−4 when the exponent field is 0, else (1 + m/2)·2^(4−e)
        magnitude = mantissa * 2.0**-4 if exponent == 0 else (1 + mantissa / 2) * 2.0 ** (4 - exponent)
        values.append(-magnitude if sign else magnitude)
    table = torch.tensor(values, dtype=torch.float32)
    return table / table.abs().max()


def int4_levels() -> torch.Tensor:
    """Symmetric 4-bit integers: ``{−7, …, 7}/7`` — 15 evenly spaced sorted levels with 0."""
    return torch.arange(-7, 8, dtype=torch.float32) / 7


def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> torch.Tensor:
    """The 8-bit dynamic data type bitsandbytes uses for double quantisation (Dettmers 2015).

    For each decimal exponent ``10^(i−E+1)``, i = 0…E−1 (E = ``max_exponent_bits``), the
    fraction bits split [0.1, 1] into ``2^(i + bits − 1 − E)`` equal bins (twice as many when
    unsigned); the levels are the bin centres times the exponent, mirrored for the sign, plus
    0 and 1. Signed 8-bit (the default): 1, 2, 4, …, 64 levels per decade and sign, from
    [10⁻⁷, 10⁻⁶) up to [0.1, 1), i.e. 0 to 6 fraction bits. Arithmetic is float32, as in the
    reference. Returns 2^total_bits sorted values.
    """
    if not isinstance(signed, bool):
        raise ArgumentTypeError(f"signed must be True or False, got {signed!r}")
    total_bits = check_int(total_bits, "total_bits", 2, 8)
    max_exponent_bits = check_int(max_exponent_bits, "max_exponent_bits", 1, total_bits - 1,
                                  " (fewer than total_bits)")
    fraction_bits = total_bits - 1 - max_exponent_bits
    values: list[float] = []

    def add_decade(scale, n_bins):
        edges = torch.linspace(0.1, 1, n_bins + 1, dtype=torch.float32)
        centres = (edges[:-1] + edges[1:]) / 2.0  # bin centres in [0.1, 1]
        values.extend((scale * centres).tolist())
        if signed:
            values.extend((-scale * centres).tolist())

    for i in range(max_exponent_bits):
        add_decade(10 ** (i - max_exponent_bits + 1), 2 ** (i + fraction_bits + (0 if signed else 1)))
    if fraction_bits > 0:  # all-zero exponent without an indicator bit: 2^f − 1 extra bins at 10^0
        add_decade(1, 2**fraction_bits - 1)
    values += [0.0, 1.0]  # 2^total_bits values in all
    if len(values) != 2**total_bits:  # bitsandbytes asserts the same (unsigned maps with fraction bits)
        raise ValueError(f"dynamic_map(signed={signed}, max_exponent_bits={max_exponent_bits}, "
                         f"total_bits={total_bits}) has {len(values)} levels, not 2^total_bits = "
                         f"{2**total_bits}: this layout is not defined (bitsandbytes refuses it too)")
    return torch.tensor(sorted(values), dtype=torch.float32)


def fp8_e4m3_levels() -> torch.Tensor:
    """All finite FP8 E4M3 values (OCP "E4M3FN"), sorted and divided by the largest, 448.

    Fields ``s eeee mmm``, bias 7: ``(1 + m/8)·2^(e−7)`` for e ≥ 1, subnormal
    ``(m/8)·2^−6`` for e = 0; the pattern e = 15, m = 7 is NaN and left out. 254 values
    (±0 both kept). The "8-bit float" the QLoRA paper (§3, double quantisation) names.
    """
    values = []
    for sign in (1.0, -1.0):
        for e in range(16):
            for m in range(8):
                if e == 15 and m == 7:
                    continue  # NaN
                magnitude = (m / 8) * 2.0**-6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
                values.append(sign * magnitude)
    table = torch.tensor(sorted(values), dtype=torch.float32)
    return table / table.abs().max()


def as_levels(levels) -> torch.Tensor:
    """Validate a code table: 1-D, 2…256 finite float values, max |level| = 1 (fp32 copy)."""
    if not isinstance(levels, torch.Tensor):
        try:
            levels = torch.tensor(levels, dtype=torch.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"levels must be a 1-D tensor of floats, got {type(levels).__name__}") from e
    if levels.dim() != 1 or not 2 <= levels.numel() <= 256:
        raise ValueError(f"levels must be a 1-D tensor of 2..256 values, got shape {tuple(levels.shape)}")
    if not levels.is_floating_point():
        raise TypeError(f"levels must be floating point, got {levels.dtype}")
    levels = levels.detach().to(torch.float32)
    if not torch.isfinite(levels).all():
        raise ValueError("levels must all be finite")
    peak = levels.abs().max().item()
    if abs(peak - 1.0) > 1e-6:
        raise ValueError(f"levels must be normalised so that max |level| = 1, got {peak}")
    if torch.unique(levels).numel() < 2:
        raise ValueError("levels must hold at least two distinct values (one level codes nothing)")
    return levels
