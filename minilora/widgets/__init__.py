"""ipywidgets panels built on minilora.viz. The logic lives in plain functions that tests
drive by setting ``.value`` on the controls; every panel also has a static figure.

One submodule per topic (tour, rank, lora, quant, memory); the panels are re-exported here.
"""

from .lora import LoRAExplorer, lora_costs
from .memory import MemoryExplorer, memory_summary
from .quant import DoubleQuantExplorer, QuantExplorer, double_quant_point, quant_summary
from .rank import RankExplorer, truncation_summary
from .tour import positive_probability, probe_report, sentiment_probe

__all__ = [
    "DoubleQuantExplorer", "LoRAExplorer", "MemoryExplorer", "QuantExplorer", "RankExplorer",
    "double_quant_point", "lora_costs", "memory_summary", "positive_probability", "probe_report",
    "quant_summary", "sentiment_probe", "truncation_summary",
]
