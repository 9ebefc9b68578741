"""Per-clip features of long programs: the recipe, the backbones, the extraction of one video
(:func:`extract_video`, what the Score page calls for an uploaded program) and of a dataset
(:func:`extract_all`, resumable), the run that does it (``aqa.features.run``, started by
``python -m aqa features extract`` through ``aqa.features.submit``).

The datasets that read the features, the recipe file and its check are ``aqa.data.features``
(re-exported here: :func:`recipe_of`, :func:`check_recipe`).
"""

from aqa.data.features import check_recipe, recipe_of  # noqa: F401
from aqa.features.extract import (  # noqa: F401
    BACKBONE_NAMES, Recipe, clip_starts, extract_all, extract_video, frame_plan, load_backbone,
    recipe_from_record, recipe_record,
)
