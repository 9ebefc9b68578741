"""The method-agnostic training loop: ``python -m aqa.train RUN_DIR``."""
