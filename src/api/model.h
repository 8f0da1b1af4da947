/* Internal accessors of the model loader (src/model.c) for the rest of the library. */
#ifndef PNDM_MODEL_H
#define PNDM_MODEL_H

#include "pndm.h"

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

#endif
