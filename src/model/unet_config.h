/* UNet2DModel config.json -> struct (diffusers 0.30.3 keys and defaults).
 *
 * unet_config_parse checks, in this order, stopping at the first failure (PNDM_ERR_MODEL, one
 * message "<source>: ..." naming the option):
 *   1. the text is well-formed JSON, an object, without duplicate keys;
 *   2. every option has the right type and a sane value: positive sizes and channel counts,
 *      lists of matching lengths (down_block_types, up_block_types, block_out_channels), known
 *      diffusers block types, downsample_padding 0 or 1, norm_eps > 0, attention_head_dim null
 *      or positive, ...;
 *   3. options this implementation does not support are refused by name: unknown keys,
 *      _class_name other than UNet2DModel, class_embed_type / num_class_embeds, act_fn other
 *      than silu, time_embedding_type other than positional / fourier, resnet_time_scale_shift
 *      other than default / scale_shift, diffusers block types other than the ten below,
 *      downsample_type / upsample_type that contradict a block type, skip blocks mixed with
 *      other blocks or without 3 image channels.
 * Architecture checks that need the block layout (norm groups dividing channel counts,
 * attention heads) are done by unet_build (unet.h).
 * Accepted without effect, as in diffusers at inference: dropout, num_train_timesteps (only
 * used by "learned" embeddings), flip_sin_to_cos / freq_shift with fourier embeddings, keys
 * starting with '_' other than _class_name. act_fn "swish" is diffusers' alias of silu.
 * Block names may carry diffusers' legacy "UNetRes" prefix. */
#ifndef PNDM_UNET_CONFIG_H
#define PNDM_UNET_CONFIG_H

#include "pndm.h"

#define UNET_MAX_LEVELS 8
#define UNET_MAX_CHANNELS 16384
#define UNET_MAX_LAYERS 64
#define UNET_MAX_SAMPLE 65536

typedef enum unet_block_kind {
    UNET_DOWN_BLOCK,           /* DownBlock2D */
    UNET_ATTN_DOWN_BLOCK,      /* AttnDownBlock2D */
    UNET_RESNET_DOWNSAMPLE,    /* ResnetDownsampleBlock2D */
    UNET_SKIP_DOWN_BLOCK,      /* SkipDownBlock2D */
    UNET_ATTN_SKIP_DOWN_BLOCK, /* AttnSkipDownBlock2D */
    UNET_UP_BLOCK,             /* UpBlock2D */
    UNET_ATTN_UP_BLOCK,        /* AttnUpBlock2D */
    UNET_RESNET_UPSAMPLE,      /* ResnetUpsampleBlock2D */
    UNET_SKIP_UP_BLOCK,        /* SkipUpBlock2D */
    UNET_ATTN_SKIP_UP_BLOCK    /* AttnSkipUpBlock2D */
} unet_block_kind;

typedef struct unet_config {
    int sample_size;
    int in_channels, out_channels;
    int center_input_sample; /* sample = 2 * sample - 1 first */
    int time_fourier;        /* time_embedding_type: 0 positional, 1 fourier */
    int flip_sin_to_cos;     /* positional only */
    float freq_shift;        /* positional only (downscale_freq_shift) */
    int n_levels;            /* len(block_out_channels) */
    int block_out_channels[UNET_MAX_LEVELS];
    unet_block_kind down_block_types[UNET_MAX_LEVELS];
    unet_block_kind up_block_types[UNET_MAX_LEVELS];
    int layers_per_block;
    float mid_block_scale_factor;
    int downsample_padding; /* 0 or 1 */
    int downsample_resnet;  /* downsample_type == "resnet" (else "conv") */
    int upsample_resnet;    /* upsample_type == "resnet" (else "conv") */
    int attention_head_dim; /* 0 = null: one head spanning the channels */
    int norm_num_groups;
    int attn_norm_num_groups; /* 0 = null */
    float norm_eps;
    int scale_shift;   /* resnet_time_scale_shift == "scale_shift" */
    int add_attention; /* attention in the mid block */
} unet_config;

int unet_block_is_skip(unet_block_kind k);
int unet_block_has_attention(unet_block_kind k);

pndm_status unet_config_parse(const char *json, size_t len, const char *source, unet_config *cfg, pndm_error *err);

#endif
