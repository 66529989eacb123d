"""Fitting Wan2.1 VACE on the card: estimate peak GPU memory per placement and pick the fastest that fits.

Placements, fastest first (all are diffusers' own mechanisms):

- ``none``: transformer and VAE resident on the GPU (the text encoder joins them while it
  encodes a new prompt, or encodes on the CPU when it would not fit beside them);
- ``model``: ``enable_model_cpu_offload`` - one whole model on the GPU at a time;
- ``group``: ``enable_group_offload(offload_type="block_level", num_blocks_per_group=1,
  use_stream=True)`` on the transformer - blocks stream in (one ahead), the VAE stays resident;
- ``sequential``: ``enable_sequential_cpu_offload`` - leaf modules stream in one by one (slowest).

Estimates (bytes; 1 GiB = 2**30) for a clip of F frames at H x W pixels, ``N = (F-1)/4+1 * H/16 * W/16``
tokens, hidden size ``d``, FFN size ``f``, batch ``b`` (2 with classifier-free guidance batched):

- weights: transformer parameters (counted from its config, :meth:`WanTransformerSize.parameters`)
  x 2 (bf16); VAE 127 M parameters x 4 (fp32); UMT5-XXL text encoder 11.4 GB (bf16);
- denoising activations: ``(vace_layers + 12) * b*N*d*2 + 2 * b*N*f*2`` - the VACE hints held
  through the forward pass, a block's working tensors (fp32 norm copies, q/k/v, attention output)
  and the FFN's inner tensors; attention itself is flash-style (no N x N matrix);
- VAE activations: ``12 * 4 frames * 96 channels * tile pixels * 4`` with tiles of at most
  256 x 256 pixels when tiling is on (the VAE works causally on 4-frame chunks).

A placement fits when ``1.1 * peak + 1 GiB`` (allocator slack, CUDA context) is at most the free
memory. ``bench/gpu_check.py`` prints the estimate next to the measured peak so the formulas can
be checked on a real card; docs/gpu.md lists what fits on 24, 48 and 80 GB cards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 2**30
PLACEMENTS = ("none", "model", "group", "sequential")
SAFETY_FACTOR = 1.1
SAFETY_BYTES = GIB
TEXT_ENCODER_BYTES = int(11.4e9)  # UMT5-XXL encoder in bf16 (the 1.3B and 14B repos ship the same one)
VAE_PARAMETERS = 126_892_531  # AutoencoderKLWan() (Wan2.1 VAE), counted from its config

#: Published transformer configurations (``scripts/convert_wan_to_diffusers.py``).
WAN_VACE_1_3B_CONFIG: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    eps=1e-6, vace_layers=list(range(0, 30, 2)), vace_in_channels=96)
WAN_VACE_14B_CONFIG: dict[str, Any] = dict(
    WAN_VACE_1_3B_CONFIG, num_attention_heads=40, ffn_dim=13824, num_layers=40, vace_layers=list(range(0, 40, 5)))


@dataclass(frozen=True)
class WanTransformerSize:
    """The sizes of a Wan (VACE) transformer that decide its memory: hidden size, FFN size, block counts."""

    dim: int
    ffn_dim: int
    num_layers: int
    num_vace_layers: int
    text_dim: int
    freq_dim: int
    in_channels: int
    out_channels: int
    vace_in_channels: int
    patch_volume: int

    @classmethod
    def from_config(cls, config: Any) -> WanTransformerSize:
        """From a transformer config (a dict or diffusers' FrozenDict / ``transformer.config``)."""
        get = config.get if hasattr(config, "get") else lambda key, default=None: getattr(config, key, default)
        patch = get("patch_size", (1, 2, 2))
        return cls(dim=int(get("num_attention_heads")) * int(get("attention_head_dim")), ffn_dim=int(get("ffn_dim")),
                   num_layers=int(get("num_layers")), num_vace_layers=len(get("vace_layers", None) or ()),
                   text_dim=int(get("text_dim")), freq_dim=int(get("freq_dim", 256)),
                   in_channels=int(get("in_channels")), out_channels=int(get("out_channels", 16)),
                   vace_in_channels=int(get("vace_in_channels", 0) or 0),
                   patch_volume=int(patch[0]) * int(patch[1]) * int(patch[2]))

    def block_parameters(self) -> int:
        """One transformer block: self- and cross-attention (q, k, v, out + RMS norms), cross norm, FFN, modulation."""
        d, f = self.dim, self.ffn_dim
        return 8 * d * d + 2 * d * f + f + 21 * d

    def parameters(self) -> int:
        """All parameters: main blocks, VACE blocks (a block + output projection; the first also an input one), the rest."""
        d = self.dim
        vace = self.num_vace_layers * (self.block_parameters() + d * d + d) + (d * d + d if self.num_vace_layers else 0)
        patch_in = self.patch_volume * (self.in_channels * d) + d
        vace_patch_in = (self.patch_volume * self.vace_in_channels * d + d) if self.num_vace_layers else 0
        time_embed = self.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d
        text_embed = self.text_dim * d + d + d * d + d
        head = d * self.out_channels * self.patch_volume + self.out_channels * self.patch_volume + 2 * d
        return self.num_layers * self.block_parameters() + vace + patch_in + vace_patch_in + time_embed + text_embed + head

    def largest_layer_parameters(self) -> int:
        return max(self.dim * self.ffn_dim + self.ffn_dim, self.text_dim * self.dim + self.dim)


@dataclass(frozen=True)
class ClipShape:
    """What one sampling run processes: frames (4k + 1), height and width in pixels, CFG batch (1 or 2)."""

    frames: int = 81
    height: int = 512
    width: int = 512
    batch: int = 2

    @property
    def tokens(self) -> int:
        return ((self.frames - 1) // 4 + 1) * (self.height // 16) * (self.width // 16)


@dataclass
class PlacementPlan:
    """The chosen placement, why, and the estimated peak per placement (GiB)."""

    placement: str
    text_encoder_on_gpu: bool
    free_gib: float | None
    reason: str
    peak_gib: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryModel:
    """Byte counts of the pieces (see the module docstring for the formulas)."""

    transformer: WanTransformerSize
    clip: ClipShape = ClipShape()
    transformer_bytes_per_parameter: int = 2
    text_encoder_bytes: int = TEXT_ENCODER_BYTES
    vae_bytes: int = 4 * VAE_PARAMETERS
    vae_tiling: bool = True

    @property
    def transformer_bytes(self) -> int:
        return self.transformer.parameters() * self.transformer_bytes_per_parameter

    def denoise_activation_bytes(self) -> int:
        size, clip = self.transformer, self.clip
        hidden = clip.batch * clip.tokens * size.dim * 2
        return (size.num_vace_layers + 12) * hidden + 2 * clip.batch * clip.tokens * size.ffn_dim * 2

    def vae_activation_bytes(self) -> int:
        height, width = self.clip.height, self.clip.width
        if self.vae_tiling:
            height, width = min(height, 256), min(width, 256)
        return 12 * 4 * 96 * height * width * 4

    def peak_bytes(self, placement: str, *, text_encoder_on_gpu: bool = False) -> int:
        """Estimated peak for ``placement``; ``text_encoder_on_gpu`` only matters for ``none``."""
        size = self.transformer
        act, vae_act = self.denoise_activation_bytes(), self.vae_activation_bytes()
        if placement == "none":
            resident = self.transformer_bytes + self.vae_bytes
            encode = resident + self.text_encoder_bytes if text_encoder_on_gpu else 0
            return max(encode, resident + max(act, vae_act))
        if placement == "model":
            return max(self.transformer_bytes + act, self.vae_bytes + vae_act)
        if placement == "group":
            blocks = size.num_layers + size.num_vace_layers
            outside_blocks = self.transformer_bytes - blocks * size.block_parameters() * self.transformer_bytes_per_parameter
            streamed = 3 * (size.block_parameters() + size.dim * size.dim) * self.transformer_bytes_per_parameter
            return max(outside_blocks + streamed + act + self.vae_bytes, self.vae_bytes + vae_act)
        if placement == "sequential":
            return 2 * size.largest_layer_parameters() * self.transformer_bytes_per_parameter + max(act, vae_act)
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")


def fits(peak_bytes: int, free_bytes: int) -> bool:
    return SAFETY_FACTOR * peak_bytes + SAFETY_BYTES <= free_bytes


def plan_placement(memory: MemoryModel, free_bytes: int | None) -> PlacementPlan:
    """The fastest placement whose estimated peak fits in ``free_bytes`` (``sequential`` if none does).

    ``free_bytes=None`` (no CUDA device) gives placement ``"cpu"``.
    """
    peaks = {name: memory.peak_bytes(name) for name in PLACEMENTS}
    peak_gib = {name: round(value / GIB, 2) for name, value in peaks.items()}
    encode_on_gpu = memory.peak_bytes("none", text_encoder_on_gpu=True)
    peak_gib["none_with_text_encoder"] = round(encode_on_gpu / GIB, 2)
    if free_bytes is None:
        return PlacementPlan("cpu", False, None, "no CUDA device: everything runs on the CPU", peak_gib)
    free_gib = round(free_bytes / GIB, 2)
    for name in PLACEMENTS:
        if fits(peaks[name], free_bytes):
            text_on_gpu = name == "none" and fits(encode_on_gpu, free_bytes)
            note = "" if name != "none" or text_on_gpu else "; the text encoder encodes on the CPU (once per prompt)"
            reason = f"{name}: estimated peak {peak_gib[name]:.1f} GiB fits in {free_gib:.1f} GiB free{note}"
            return PlacementPlan(name, text_on_gpu, free_gib, reason, peak_gib)
    reason = (f"sequential: even leaf-by-leaf offload needs about {peak_gib['sequential']:.1f} GiB and "
              f"{free_gib:.1f} GiB are free; expect an out-of-memory error - lower max_pixels or window_frames")
    return PlacementPlan("sequential", False, free_gib, reason, peak_gib)


def free_vram_bytes(device: Any = None) -> tuple[int, int] | None:
    """(free, total) bytes on the CUDA ``device`` (default the current one), or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(device)
    return int(free), int(total)


@dataclass(frozen=True)
class FitReport:
    """One ``doctor`` row: what a model needs on this machine at the default clip."""

    name: str
    ok: bool
    detail: str
    hint: str = ""


def _transformer_config(models_dir: Any, folder_name: str, published: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The weights folder's transformer config if it is there, else the published one (and which it was)."""
    import json
    from pathlib import Path

    if models_dir is not None:
        path = Path(models_dir).expanduser() / folder_name / "transformer" / "config.json"
        if path.is_file():
            try:
                return json.loads(path.read_text()), str(path)
            except (OSError, ValueError):
                pass
    return published, "published config"


def fit_reports(free_bytes: int | None, total_bytes: int | None = None, models_dir: Any = None,
                clip: ClipShape = ClipShape()) -> list[FitReport]:
    """For ``doctor``: per wan-vace model, the placement chosen with ``free_bytes`` free (quality and fast preset)."""
    if free_bytes is None:
        return [FitReport("vram", False, "no CUDA device: the diffusion engines would run on the CPU (very slowly)",
                          "see docs/gpu.md for what fits on 24, 48 and 80 GB cards")]
    card = f"{free_bytes / GIB:.1f} GiB free" + (f" of {total_bytes / GIB:.1f} GiB" if total_bytes else "")
    rows = [FitReport("vram", True, card)]
    for engine, folder, published in (("wan-vace", "Wan2.1-VACE-1.3B-diffusers", WAN_VACE_1_3B_CONFIG),
                                      ("wan-vace-14b", "Wan2.1-VACE-14B-diffusers", WAN_VACE_14B_CONFIG)):
        config, source = _transformer_config(models_dir, folder, published)
        size = WanTransformerSize.from_config(config)
        quality = plan_placement(MemoryModel(size, clip), free_bytes)
        fast = plan_placement(MemoryModel(size, ClipShape(clip.frames, clip.height, clip.width, 1)), free_bytes)
        fits_somewhere = quality.placement != "sequential" or fits(MemoryModel(size, clip).peak_bytes("sequential"),
                                                                  free_bytes)
        detail = (f"{clip.width}x{clip.height}x{clip.frames}: {quality.reason}; fast preset: {fast.placement} "
                  f"(~{fast.peak_gib[fast.placement]:.1f} GiB) [{source}]")
        hint = "" if fits_somewhere else "lower max_pixels / window_frames or use a larger card (docs/gpu.md)"
        rows.append(FitReport(f"vram {engine}", fits_somewhere, detail, hint))
    return rows


def placement_table(card_gib: tuple[int, ...] = (24, 48, 80),
                    clips: tuple[ClipShape, ...] = (ClipShape(81, 512, 512), ClipShape(81, 480, 832))) -> str:
    """A markdown table: for each model and clip, the placement chosen on each card size (for docs/gpu.md).

    A card's free memory is taken as its size less 0.5 GiB (CUDA context, display).
    """
    header = "| model | clip (CFG batched) | " + " | ".join(f"{c} GB card" for c in card_gib) + " |"
    lines = [header, "|" + "---|" * (2 + len(card_gib))]
    for label, config in (("VACE 1.3B", WAN_VACE_1_3B_CONFIG), ("VACE 14B", WAN_VACE_14B_CONFIG)):
        for clip in clips:
            memory = MemoryModel(WanTransformerSize.from_config(config), clip)
            cells = []
            for card in card_gib:
                plan = plan_placement(memory, int((card * 1e9) - 0.5 * GIB))
                cells.append(f"{plan.placement} (~{plan.peak_gib[plan.placement]:.0f} GiB)")
            lines.append(f"| {label} | {clip.width}x{clip.height}x{clip.frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(placement_table())
