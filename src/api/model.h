/* Internal accessors of the model loader (src/model.c) for the rest of the library. */
#ifndef PNDM_MODEL_H
#define PNDM_MODEL_H

#include "pndm.h"
#include "tensors.h"

/* The scheduler_config JSON stored with the model (a pndm file's "pndm.scheduler_config", or
 * the scheduler_config.json found beside a diffusers model), or NULL if there is none.
 * *source (may be NULL) names where it came from, for messages. */
const char *model_scheduler_json(const pndm_model *m, const char **source);

/* Bytes one pndm_unet_forward of (B, C, H, W) allocates with the default thread count
 * (activations and scratch, weights excluded); SIZE_MAX if it overflows or B, H, W < 1. */
size_t model_workspace_estimate(const pndm_model *m, int B, int H, int W);

/* Tests: named intermediates of batch element 0 during pndm_unet_forward ("time_proj",
 * "time_embedding", "down_blocks.0", ..., "mid_block", "up_blocks.<i>"). */
void model_set_tap(pndm_model *m, void (*fn)(const char *name, const float *data, size_t n, void *user), void *user);

/* The key renames diffusers 0.30 applies to a UNet2DModel state dict before loading it
 * (ModelMixin._convert_deprecated_attention_blocks): in every attention block
 * (down_blocks.N / up_blocks.N / mid_block .attentions.M), query -> to_q, key -> to_k,
 * value -> to_v, proj_attn -> to_out.0 (weight and bias). A table holding a tensor under both
 * names is refused naming both (PNDM_ERR_MODEL). The table is re-finished (sorted) after. */
pndm_status model_convert_keys(tt_table *t, pndm_error *err);

#endif
