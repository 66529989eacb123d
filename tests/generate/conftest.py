"""Tiny random models for the generate tests, built offline once per session and saved like the real
folders (Wan2.1 T2V / I2V / VACE, Depth Anything V2), so engines load them through the users' code path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ["a", "the", "fox", "in", "snow", "red", "forest", "blurry", "low", "quality", "distorted", "deformed",
         "flickering", "artifacts", "watermark", "text", "oversaturated", "overexposed", "jpeg", "camera", "shake",
         "motion", "cube", "sliding"]
TEXT_DIM = 32


def _text_stack():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>", model_max_length=512)
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2,
                                          num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                                          dropout_rate=0.0)).eval()
    return tokenizer, encoder


def _vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def _scheduler():
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, out_channels=16,
                    text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def build_tiny_t2v():
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    tokenizer, encoder = _text_stack()
    return WanPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=_vae(), scheduler=_scheduler(),
                       transformer=WanTransformer3DModel(in_channels=16, **_TRANSFORMER))


def build_tiny_i2v():
    import torch
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    tokenizer, encoder = _text_stack()
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=1)).eval()
    return WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=_vae(), scheduler=_scheduler(),
                                   image_processor=CLIPImageProcessor(crop_size=32, size=32),
                                   image_encoder=image_encoder,
                                   transformer=WanTransformer3DModel(in_channels=36, image_dim=4, **_TRANSFORMER))


def build_tiny_vace():
    import torch
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    tokenizer, encoder = _text_stack()
    transformer = WanVACETransformer3DModel(in_channels=16, vace_layers=[0], vace_in_channels=96, **_TRANSFORMER)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=_vae(), scheduler=_scheduler(),
                           transformer=transformer)


def build_tiny_depth():
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, out_features=["stage1", "stage2"], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                 reassemble_factors=[2, 1], neck_hidden_sizes=[16, 32], fusion_hidden_size=16,
                                 head_hidden_size=8, depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # random heads end in ReLU ~ 0: a positive bias gives a usable disparity map
        model.head.conv3.bias.fill_(1.0)
        model.head.conv3.weight.mul_(2000.0)
    return model


@pytest.fixture(scope="session")
def generate_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with tiny random T2V, I2V, VACE and Depth Anything weights in the published layouts."""
    root = tmp_path_factory.mktemp("generate_models")
    build_tiny_t2v().save_pretrained(root / "Wan2.1-T2V-1.3B-Diffusers")
    build_tiny_i2v().save_pretrained(root / "Wan2.1-I2V-14B-480P-Diffusers")
    build_tiny_vace().save_pretrained(root / "Wan2.1-VACE-1.3B-diffusers")
    build_tiny_depth().save_pretrained(root / "Depth-Anything-V2-Small-hf")
    return root


@pytest.fixture(autouse=True)
def _two_threads():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)
