"""The old home of the checkpoint importers: everything now lives in :mod:`aqa.official` (loading,
checking, writing the imported run) and in each method module (its key mapping)."""

from aqa.models.core import core_state  # noqa: F401
from aqa.models.tpt import is_official_tpt, tpt_state  # noqa: F401
from aqa.official import (BINS, OFFICIAL_METRICS, OFFICIAL_PREPROCESSING,  # noqa: F401
                          check_fit, choose_bins, i3d_state_for,
                          import_checkpoint, import_pecop, load_official, official_preprocessing,
                          plain, strip_module, write_imported_run)
