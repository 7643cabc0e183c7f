"""ipywidgets panels: controls wired to a concept function and a ``minilora.viz`` figure.

No computation lives here (docs/architecture.md): each panel calls the idea's package for
its numbers and ``minilora.viz`` for its figure. Tests drive the panels by setting
``.value`` on their controls; every panel has a static figure in its notebook as well.
One module per notebook topic (tour, rank, lora, quant, memory).
"""

from .adalora import RankBudgetExplorer
from .lora import TARGET_SETS, LoRAExplorer
from .memory import MemoryCalculator, MemoryExplorer
from .quant import DoubleQuantExplorer, QuantExplorer
from .rank import RankExplorer
from .tour import probe_report, sentiment_probe

__all__ = ["RankBudgetExplorer", "TARGET_SETS", "DoubleQuantExplorer", "LoRAExplorer", "MemoryCalculator",
           "MemoryExplorer", "QuantExplorer", "RankExplorer", "probe_report", "sentiment_probe"]
