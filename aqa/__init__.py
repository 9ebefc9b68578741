"""AQA Studio: action quality assessment methods, datasets, training and scoring."""

__version__ = "0.1.0"
