"""Per-video LoRA tuning for the Wan VACE inpainting engine (EasyCreator training side).

- :mod:`.config`: :class:`TuneConfig` (paper defaults) and the angle schedule;
- :mod:`.source`: the video with depth and cameras at training resolution;
- :mod:`.data`: target paths, double-reprojection and cycle-back pairs, composite masks;
- :mod:`.model`: base pipeline, latent/prompt caches, LoRA set-up, diffusers-format save, registration;
- :mod:`.trainer`: flow-matching LoRA training with checkpoints and exact resume;
- :mod:`.rounds`: the self-iterative rounds and the run folder;
- :mod:`.preview`: per-round previews.

Only :mod:`.config` and :mod:`.source` are imported here (no torch/diffusers at package import).
"""

from .config import DEFAULT_TARGET_MODULES, TuneConfig
from .source import TuneSource, clip_length, prepare_source

__all__ = ["DEFAULT_TARGET_MODULES", "TuneConfig", "TuneSource", "clip_length", "prepare_source"]
