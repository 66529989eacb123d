"""Tiny random models built offline from configs, saved like the published folders (one recipe each).

Used by the engine, tune, generate, reshoot, demo and add-on tests: a word-level tokenizer and a tiny
UMT5 encoder, a tiny Wan VAE, a flow UniPC scheduler, tiny Wan VACE / T2V / I2V transformers and a
tiny Depth Anything V2. Weights are random (seeded), so tests check behaviour, not image quality.
"""

from __future__ import annotations

WORDS = ["a", "the", "of", "and", "in", "on", "with", "street", "city", "house", "tree", "car", "person", "sky",
         "cloud", "road", "grass", "water", "fox", "snow", "forest", "cube", "sliding", "red", "blue", "green",
         "sunny", "day", "night", "photo", "video", "blurry", "low", "quality", "distorted", "deformed",
         "flickering", "static", "artifacts", "watermark", "text", "oversaturated", "overexposed", "jpeg",
         "camera", "shake", "motion"]
TEXT_DIM = 32


def text_stack():
    """``(tokenizer, UMT5 encoder)``: a word-level tokenizer over :data:`WORDS` (no download) and a tiny encoder."""
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


def tiny_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def flow_scheduler():
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def _transformer_kwargs(num_layers: int) -> dict:
    return dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, out_channels=16,
                text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=num_layers, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def build_tiny_vace_pipeline():
    """A ``WanVACEPipeline`` (3 blocks, VACE blocks at 0 and 2) with random tiny components."""
    import torch
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    tokenizer, encoder = text_stack()
    transformer = WanVACETransformer3DModel(in_channels=16, vace_layers=[0, 2], vace_in_channels=96,
                                            **_transformer_kwargs(3))
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=tiny_vae(), scheduler=flow_scheduler(),
                           transformer=transformer)


def build_tiny_t2v():
    """A ``WanPipeline`` (text to video) with random tiny components."""
    import torch
    from diffusers import WanPipeline, WanTransformer3DModel

    torch.manual_seed(0)
    tokenizer, encoder = text_stack()
    return WanPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=tiny_vae(), scheduler=flow_scheduler(),
                       transformer=WanTransformer3DModel(in_channels=16, **_transformer_kwargs(2)))


def build_tiny_i2v():
    """A ``WanImageToVideoPipeline`` with a tiny CLIP vision encoder and random tiny components."""
    import torch
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    tokenizer, encoder = text_stack()
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=1)).eval()
    return WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=encoder, vae=tiny_vae(), scheduler=flow_scheduler(),
        image_processor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=image_encoder,
        transformer=WanTransformer3DModel(in_channels=36, image_dim=4, **_transformer_kwargs(2)))


def build_tiny_depth_model():
    """A ``DepthAnythingForDepthEstimation`` with a tiny DINOv2 backbone (28 px input, patch 14)."""
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


def build_tiny_metric_depth_model(max_depth: int = 20):
    """A Depth Anything V2 *metric* model (``depth_estimation_type="metric"``, output 0..``max_depth`` m)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=37,
                            out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                 reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[16, 32, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="metric",
                                 max_depth=max_depth)
    return DepthAnythingForDepthEstimation(config).eval()


#: the field of view (degrees) the tiny Depth Pro's FOV head always predicts
TINY_DEPTH_PRO_FOV = 55.0


def build_tiny_depth_pro_model():
    """A ``DepthProForDepthEstimation`` with tiny DINOv2 encoders (32 px input) and an FOV head that
    predicts :data:`TINY_DEPTH_PRO_FOV` degrees for every image; canonical inverse depth kept positive."""
    import torch
    from transformers import DepthProConfig, DepthProForDepthEstimation

    torch.manual_seed(0)
    encoder = {"model_type": "dinov2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 32, "patch_size": 4, "image_size": 16}
    config = DepthProConfig(patch_size=16, fusion_hidden_size=16, intermediate_hook_ids=[1, 0],
                            intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.5, 1.0],
                            scaled_images_overlap_ratios=[0.0, 0.25], scaled_images_feature_dims=[16, 8],
                            use_fov_model=True, num_fov_head_layers=1, image_model_config=dict(encoder),
                            patch_model_config=dict(encoder), fov_model_config=dict(encoder))
    model = DepthProForDepthEstimation(config).eval()
    with torch.no_grad():
        final = model.fov_model.head.layers[-1]
        final.weight.zero_()
        final.bias.fill_(TINY_DEPTH_PRO_FOV)
        depth_out = model.head.layers[-2]  # the 1x1 conv before the final ReLU
        depth_out.bias.fill_(0.5)
        depth_out.weight.abs_().mul_(0.05)  # non-negative inputs (ReLU) -> strictly positive output
    return model


def build_tiny_sam2_video(image_size: int = 64):
    """A ``Sam2VideoModel`` (Hiera stages of 1, 1, 2, 1 blocks, 64-wide features) with random weights, ``image_size`` input."""
    import torch
    from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig

    s = image_size
    backbone = Sam2HieraDetConfig(hidden_size=8, num_attention_heads=1, image_size=[s, s], blocks_per_stage=[1, 1, 2, 1],
                                  embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
                                  window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
                                  window_positional_embedding_background_size=[2, 2])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                              backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2], fpn_hidden_size=64)
    config = Sam2VideoConfig(
        vision_config=vision, image_size=s,
        prompt_encoder_config={"hidden_size": 64, "image_size": s, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 64, "mlp_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 16},
        memory_attention_hidden_size=64, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[s // 16, s // 16], memory_encoder_hidden_size=64,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=64, memory_fuser_embed_dim=64,
        memory_fuser_intermediate_dim=32)
    torch.manual_seed(0)
    return Sam2VideoModel(config).eval()
