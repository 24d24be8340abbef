"""mokd: Multi-Mode Online Knowledge Distillation (CVPR 2023), reproduced end to end."""

__version__ = "0.1.0"
