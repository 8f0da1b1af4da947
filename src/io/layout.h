/* Where a model's files are: turns what the user gave as a model (a path or a Hub id) into the
 * weights, config.json and scheduler_config.json to read, the way diffusers and huggingface_hub
 * find them offline. It knows files and folders only (no formats beyond model_index.json's
 * component names, no UNet).
 *
 * Accepted, in this order:
 *   1. an existing file: the weights themselves (.safetensors, .bin, or a *.index.json shard
 *      index), with config.json / scheduler_config.json beside it when present;
 *   2. an existing folder:
 *      - a Hub cache repo folder (models--ORG--NAME with snapshots/): the snapshot of the
 *        revision, then as below;
 *      - a pipeline folder (model_index.json, naming a UNet2DModel "unet"): the unet from unet/
 *        when that folder exists, else from the folder itself (diffusers' load_sub_model: the
 *        root-level layout of the google/ddpm-* repositories); the scheduler from scheduler/
 *        when it exists, else the folder itself;
 *      - a model folder (config.json): weights chosen as diffusers' ModelMixin.from_pretrained
 *        chooses them: diffusion_pytorch_model[.VARIANT].safetensors.index.json (sharded), then
 *        .safetensors, then .bin, then .bin.index.json; scheduler_config.json beside it, else
 *        ../scheduler/ when ../model_index.json exists;
 *   3. a Hub id (ORG/NAME, or NAME when cached) that is no local path: the local Hugging Face
 *      cache, as huggingface_hub's offline lookup: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE,
 *      else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub
 *      (~ and $VARS expanded); models--ORG--NAME/refs/REVISION (default main) holds the commit,
 *      or REVISION is a 40-hex commit; snapshots/COMMIT/ is then read as a folder. Never any
 *      network access.
 * Inside a Hub cache (a Hub id, a models--* folder, or a path under one of its snapshots/), every
 * file read must resolve (symlinks followed) inside that models--ORG--NAME folder.
 * Failures: PNDM_ERR_IO for a path that cannot be opened, PNDM_ERR_USAGE for a bad revision or
 * variant, PNDM_ERR_MODEL otherwise; each message names what was looked for and what was found. */
#ifndef PNDM_LAYOUT_H
#define PNDM_LAYOUT_H

#include "pndm.h"

typedef struct lay_model {
    char *weights;   /* the weights file, or the shard index when sharded */
    int sharded;     /* weights is a *.index.json */
    char *config;    /* config.json, or NULL (a weights file given alone: pndm single file?) */
    char *scheduler; /* scheduler_config.json, or NULL */
    char *root;      /* the Hub cache repo folder (resolved) all files must stay in, or NULL */
    int given_file;  /* the user named the weights file itself */
    char *snapshot;  /* the snapshot folder, for a Hub id or models--* folder (else NULL) */
} lay_model;

/* revision: NULL = "main"; variant: NULL = none. */
pndm_status lay_resolve(const char *spec, const char *revision, const char *variant, lay_model *out, pndm_error *err);
void lay_free(lay_model *m);

/* The Hub cache folder huggingface_hub would use (malloc'ed), from the environment. */
char *lay_hub_cache_dir(void);
/* `path` resolves (realpath) inside folder `root` (already resolved)? Else PNDM_ERR_MODEL naming
 * both (or PNDM_ERR_IO when it cannot be resolved). */
pndm_status lay_check_inside(const char *root, const char *path, pndm_error *err);

#endif
