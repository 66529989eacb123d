"""Tiny random models for the engine tests, built offline once per session and saved like the real folders.

``tiny_models_dir`` holds ``Wan2.1-VACE-1.3B-diffusers`` (tiny VACE transformer, tiny Wan VAE, tiny
UMT5 encoder, word-level tokenizer, UniPC scheduler config) and ``Depth-Anything-V2-Small-hf``
(tiny DINOv2 + DPT head), laid out as the published folders, so engines load them through the
same local-folder code users run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ["a", "the", "of", "and", "in", "on", "with", "street", "city", "house", "tree", "car", "person", "sky", "cloud", "road", "grass", "water", "blurry", "low", "quality", "distorted", "deformed", "flickering", "static", "artifacts", "watermark", "text", "oversaturated", "overexposed", "jpeg", "sunny", "day", "night", "red", "blue", "green", "photo", "video"]

TEXT_DIM = 32


def build_tiny_vace_pipeline():
    """A WanVACEPipeline with random tiny components (recipe from reference/models.md)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanVACEPipeline,
        WanVACETransformer3DModel,
    )
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    backend_tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend_tokenizer, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", model_max_length=512)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2,
                                               num_decoder_layers=2, num_heads=4,
                                               relative_attention_num_buckets=8, dropout_rate=0.0)).eval()
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                           transformer=transformer)


def build_tiny_depth_model():
    """A DepthAnythingForDepthEstimation with a tiny DINOv2 backbone (28 px input, patch 14)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=37,
                            out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                 reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[16, 32, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # random heads end in ReLU ~ 0; a positive bias gives a usable disparity map
        model.head.conv3.bias.fill_(1.0)
        model.head.conv3.weight.mul_(2000.0)
    return model


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with tiny random Wan VACE and Depth Anything weights in the published layouts."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_vace_pipeline().save_pretrained(root / "Wan2.1-VACE-1.3B-diffusers")
    build_tiny_depth_model().save_pretrained(root / "Depth-Anything-V2-Small-hf")
    return root


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_models_dir: Path) -> Path:
    """A random rank-4 LoRA on the tiny transformer's main-block attention, saved in diffusers format."""
    import torch
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = WanVACETransformer3DModel.from_pretrained(tiny_models_dir / "Wan2.1-VACE-1.3B-diffusers",
                                                            subfolder="transformer", local_files_only=True)
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=8, init_lora_weights=True,
                                       target_modules=r"blocks.*(to_q|to_k|to_v|to_out.0)"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in transformer.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    out = tiny_models_dir / "loras" / "test-lora"
    WanVACEPipeline.save_lora_weights(
        out, transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    return out
