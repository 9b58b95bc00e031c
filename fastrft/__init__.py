"""fastrft: fast robust fine-tuning of pretrained image classifiers."""

__version__ = "0.1.0"
