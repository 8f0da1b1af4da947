/* pndm.h — diffusion image generation on the CPU with PNDM, a native counterpart of
 * Hugging Face diffusers' PNDMPipeline (UNet2DModel + PNDMScheduler), its DDIM / DDPM siblings
 * and every method of the PNDM paper (Liu et al., ICLR 2022).
 *
 * This header is the manual. A complete program (tests/cli_install.sh builds it as written
 * against the installed library: cc app.c $(pkg-config --cflags --libs pndm)):
 *
 *     #include <pndm.h>
 *     #include <stdio.h>
 *     #include <stdlib.h>
 *
 *     int main(int argc, char **argv) {
 *         const char *path = argc > 1 ? argv[1] : pndm_default_model_path();
 *         pndm_error err;
 *         pndm_model *m = NULL;
 *         if (!path) return fprintf(stderr, "no model\n"), 1;
 *         if (pndm_model_load(path, &m, &err) != PNDM_OK) return fprintf(stderr, "%s\n", err.msg), err.code;
 *         pndm_gen_params p = pndm_gen_default_params();
 *         p.steps = 50; p.batch = 4; p.seed = 42;
 *         // p.sampler.name = "ddim"; p.sampler.eta = 1.0;   // another method (default "pndm")
 *         size_t n = pndm_gen_latent_count(m, &p);            // B*C*H*W floats
 *         float *lat = malloc(n * sizeof *lat);
 *         if (!lat || pndm_generate(m, &p, NULL, lat, &err) != PNDM_OK) {
 *             fprintf(stderr, "%s\n", lat ? err.msg : "out of memory");
 *             return 1;
 *         }
 *         // lat: (B, C, H, W) final latents, image = clamp(lat/2 + 0.5, 0, 1)
 *         printf("%d images, model %s, weights %s\n", p.batch, path, pndm_model_sha256(m));
 *         free(lat);
 *         pndm_model_free(m);
 *         return 0;
 *     }
 *
 * File formats (.npy, PNG with text chunks, atomic writes) are in pndm_io.h.
 *
 * Conventions
 *   - Every fallible function returns a pndm_status and, when it is not PNDM_OK, fills the
 *     caller-owned pndm_error (may be NULL) with the same code and one line naming the file,
 *     tensor or option at fault. No function calls exit() or prints, except where documented
 *     (progress callbacks are the caller's).
 *   - Tensors are float32, C order; shapes are given in comments as (B, C, H, W).
 *   - Thread safety: a pndm_model is read-only after loading; pndm_unet_forward and
 *     pndm_generate may run concurrently on one model only with distinct workspaces, which the
 *     functions allocate themselves. The RNG and sampler objects are not shared.
 *   - Determinism: results are byte-identical for every thread count, and image i of a batch
 *     does not depend on the batch size (every image is computed by the same operations; with
 *     one generator for the batch the noise itself depends on B, as in diffusers). One
 *     exception: the pf sampler, whose adaptive step size is chosen for the whole batch.
 */
#ifndef PNDM_H
#define PNDM_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
/* Everything declared here is the library's interface: visible from libpndm.so, which is built
 * with hidden visibility for all else (internal names never leak to a program or an FFI). */
#if defined(__GNUC__) && !defined(PNDM_NO_VISIBILITY)
#pragma GCC visibility push(default)
#endif

/* ---------------------------------------------------------------------------------------- */
/* Errors. The numeric values double as pndm-gen's exit codes.                               */

typedef enum pndm_status {
    PNDM_OK = 0,
    PNDM_ERR_INTERNAL = 1,   /* a bug: please report */
    PNDM_ERR_USAGE = 2,      /* invalid argument or flag value */
    PNDM_ERR_MODEL = 3,      /* model / config / scheduler file invalid or unsupported */
    PNDM_ERR_IO = 4,         /* a file cannot be read or written */
    PNDM_ERR_NOMEM = 5,      /* out of memory, or a request larger than the machine allows */
    PNDM_ERR_INPUT = 6,      /* an input data file (.npy) is malformed or has the wrong shape */
    PNDM_ERR_INTERRUPTED = 7 /* cancelled (SIGINT/SIGTERM or the cancel flag) */
} pndm_status;

typedef struct pndm_error {
    pndm_status code;
    char msg[1024];
} pndm_error;

/* Short name of a status ("ok", "usage error", "model error", ...). */
const char *pndm_status_name(pndm_status s);
/* Version string, e.g. "0.1.0". */
const char *pndm_version(void);

/* ---------------------------------------------------------------------------------------- */
/* Random numbers identical to PyTorch's CPU generator (torch 1.13, x86-64 AVX2 build):       */
/* torch.manual_seed(seed); torch.randn(n) gives the same float32 bits as pndm_randn.        */

typedef struct pndm_rng {
    uint32_t mt[624];
    int mti;
    uint64_t seed;  /* as given to pndm_rng_seed (only the low 32 bits seed the engine) */
    int has_cached; /* torch's cached double normal (scalar path, numel < 16) */
    double cached;
} pndm_rng;

void pndm_rng_seed(pndm_rng *r, uint64_t seed);
uint32_t pndm_rng_u32(pndm_rng *r);
/* torch.randn(n): n >= 16 takes the vectorised float path (Box-Muller in chunks of 16, tail
 * recomputed), n < 16 the scalar double path. */
void pndm_randn(pndm_rng *r, float *out, size_t n);
/* diffusers randn_tensor for a batch: per_image=0: one generator seeded `seed` draws all B*per
   values at once; per_image=1: image i drawn by its own generator seeded seed+i (randn((1,...))).
   out holds B*per_image_count floats (the caller checks that product for overflow). */
void pndm_randn_batch(uint64_t seed, int per_image, int B, size_t per_image_count, float *out);

/* ---------------------------------------------------------------------------------------- */
/* Scheduler configs (scheduler_config.json). One struct holds every option of diffusers'      */
/* PNDMScheduler, DDIMScheduler and DDPMScheduler; each sampler reads the ones its reference   */
/* reads (pndm_sampler_ignored_keys names the others).                                         */

typedef enum {
    PNDM_BETA_LINEAR,
    PNDM_BETA_SCALED_LINEAR,
    PNDM_BETA_SQUAREDCOS_CAP_V2,
    PNDM_BETA_SIGMOID /* DDPMScheduler only */
} pndm_beta_schedule;
typedef enum { PNDM_PRED_EPSILON, PNDM_PRED_V, PNDM_PRED_SAMPLE /* DDIM, DDPM only */ } pndm_prediction_type;
typedef enum { PNDM_SPACING_LEADING, PNDM_SPACING_LINSPACE, PNDM_SPACING_TRAILING } pndm_spacing;
typedef enum {
    PNDM_VARIANCE_FIXED_SMALL,
    PNDM_VARIANCE_FIXED_SMALL_LOG,
    PNDM_VARIANCE_FIXED_LARGE,
    PNDM_VARIANCE_FIXED_LARGE_LOG, /* parsed, refused by the ddpm sampler (diffusers computes NaN) */
    PNDM_VARIANCE_LEARNED,         /* the model outputs 2*C channels: eps, then the variance */
    PNDM_VARIANCE_LEARNED_RANGE
} pndm_variance_type;

/* Bits of pndm_scheduler_config.given, one per key. */
enum {
    PNDM_KEY_NUM_TRAIN_TIMESTEPS = 1u << 0,
    PNDM_KEY_BETA_START = 1u << 1,
    PNDM_KEY_BETA_END = 1u << 2,
    PNDM_KEY_BETA_SCHEDULE = 1u << 3,
    PNDM_KEY_TRAINED_BETAS = 1u << 4,
    PNDM_KEY_SKIP_PRK_STEPS = 1u << 5,
    PNDM_KEY_SET_ALPHA_TO_ONE = 1u << 6,
    PNDM_KEY_PREDICTION_TYPE = 1u << 7,
    PNDM_KEY_TIMESTEP_SPACING = 1u << 8,
    PNDM_KEY_STEPS_OFFSET = 1u << 9,
    PNDM_KEY_CLIP_SAMPLE = 1u << 10,
    PNDM_KEY_CLIP_SAMPLE_RANGE = 1u << 11,
    PNDM_KEY_THRESHOLDING = 1u << 12,
    PNDM_KEY_DYNAMIC_THRESHOLDING_RATIO = 1u << 13,
    PNDM_KEY_SAMPLE_MAX_VALUE = 1u << 14,
    PNDM_KEY_VARIANCE_TYPE = 1u << 15,
    PNDM_KEY_RESCALE_BETAS_ZERO_SNR = 1u << 16
};

typedef struct pndm_scheduler_config {
    int num_train_timesteps;              /* 1000 */
    double beta_start, beta_end;          /* 0.0001, 0.02 */
    pndm_beta_schedule beta_schedule;     /* linear */
    float *trained_betas;                 /* NULL, or num_train_timesteps values (owned) */
    int skip_prk_steps;                   /* 0 (PNDM) */
    int set_alpha_to_one;                 /* 0 (PNDM, DDIM; DDIM's default is 1: see `given`) */
    pndm_prediction_type prediction_type; /* epsilon */
    pndm_spacing timestep_spacing;        /* leading */
    int steps_offset;                     /* 0 */
    /* DDIMScheduler / DDPMScheduler */
    int clip_sample;                   /* 1: clamp the predicted x0 to [-clip_sample_range, +] */
    double clip_sample_range;          /* 1.0 */
    int thresholding;                  /* 0: dynamic thresholding (Imagen) instead of clipping */
    double dynamic_thresholding_ratio; /* 0.995 */
    double sample_max_value;           /* 1.0 */
    pndm_variance_type variance_type;  /* fixed_small (DDPM) */
    int rescale_betas_zero_snr;        /* 0 */
    /* What the file said (pndm_scheduler_config_parse; none in pndm_scheduler_default_config()).
     * A key whose bit is clear takes the sampler's class default where diffusers' classes differ:
     * set_alpha_to_one is false for PNDMScheduler and true for DDIMScheduler (set the bit to
     * force the field's value). */
    unsigned given;      /* PNDM_KEY_* bits of the keys present */
    char class_name[64]; /* _class_name ("" if absent) */
    char *unknown_keys;  /* owned: keys no scheduler here reads, "a, b" (NULL if none) */
} pndm_scheduler_config;

/* diffusers' PNDMScheduler defaults (and DDIM's / DDPM's for their own keys). */
pndm_scheduler_config pndm_scheduler_default_config(void);
/* Parse a scheduler_config.json text (any diffusers scheduler's: keys no sampler here reads are
 * accepted and listed in unknown_keys; a key given twice and invalid values are refused by name
 * with PNDM_ERR_MODEL). Values are checked against the file's _class_name: "sigmoid" betas only
 * for DDPMScheduler, prediction_type "sample" only for DDIM/DDPMScheduler. `source` names the
 * file in messages. *cfg is written only on success (then free it with
 * pndm_scheduler_config_free). */
pndm_status pndm_scheduler_config_parse(const char *json, size_t len, const char *source, pndm_scheduler_config *cfg,
                                        pndm_error *err);
void pndm_scheduler_config_free(pndm_scheduler_config *cfg); /* frees trained_betas, unknown_keys */
/* One line describing the config as PNDMScheduler reads it, for PNG metadata and logs. */
void pndm_scheduler_config_describe(const pndm_scheduler_config *cfg, char *buf, size_t size);

/* ---------------------------------------------------------------------------------------- */
/* Samplers. Each reproduces one reference implementation exactly (float32, the reference's    */
/* operation order; see README "Samplers"):                                                    */
/*   pndm        diffusers PNDMScheduler (PRK warm-up + PLMS, or PLMS with skip_prk_steps)     */
/*   ddim, ddpm  diffusers DDIMScheduler + DDIMPipeline, DDPMScheduler + DDPMPipeline          */
/*   ddim-paper, s-pndm, f-pndm, fon, pf   the PNDM paper's code (luping-liu/PNDM): its        */
/*               float64-built betas (beta_schedule linear -> linear, scaled_linear -> quad,    */
/*               squaredcos_cap_v2 -> cosine), alphas read at t+1, `steps` = its sample_speed */
/*               (skip = T // steps, ceil(T / skip) steps); pf integrates the probability-flow */
/*               ODE with scipy's RK45 (rtol = atol = 1e-5) over the whole batch.              */
/* Determinism: byte-identical for any thread count, and with per_image_seeds image i equals a  */
/* run of that image alone, for every sampler except pf, whose step size is controlled by an    */
/* error norm over the whole batch (as in the paper's code): a pf image depends on its batch.   */

typedef struct pndm_sampler pndm_sampler;

typedef struct pndm_sampler_params {
    const char *name;             /* one of the names above; NULL = "pndm" */
    double eta;                   /* ddim: weight of the per-step noise (0 = deterministic DDIM) */
    int use_clipped_model_output; /* ddim: recompute eps from the clipped x0 (0) */
} pndm_sampler_params;
pndm_sampler_params pndm_sampler_default_params(void);

typedef struct pndm_sampler_info {
    const char *name;
    const char *summary;   /* one line */
    const char *calls;     /* model calls for N steps, in words ("N + 9") */
    const char *reference; /* the code it reproduces */
    int batch_coupled;     /* 1: the images of a batch share the method's decisions (pf: one adaptive
                            * step size for the batch), so image i depends on the batch around it */
} pndm_sampler_info;
/* The samplers, for listings: i = 0 .. pndm_sampler_count()-1 (NULL outside). */
int pndm_sampler_count(void);
const pndm_sampler_info *pndm_sampler_get_info(int i);
/* The sampler named NAME (NULL: the default, pndm), or NULL when there is none. */
const pndm_sampler_info *pndm_sampler_find_info(const char *name);

/* A sampler for `steps` inference steps (the paper's methods: their sample_speed). Refused
 * (PNDM_ERR_USAGE, naming the reason): an unknown name, steps the reference cannot run (steps
 * outside 1..num_train_timesteps; pndm: steps < 4 with PRK and timesteps outside 0..T-1; the
 * paper's methods: the step counts whose top timestep reads alphas_cump[T] (the message names
 * the nearest counts that work); a config the sampler's reference cannot run (PNDM_ERR_MODEL:
 * pndm with prediction_type sample, sigmoid betas outside ddpm, trained_betas for the paper's
 * methods, ddpm's variance_type fixed_large_log, whose NaN images diffusers computes). */
pndm_status pndm_sampler_create(const pndm_sampler_params *params, const pndm_scheduler_config *cfg, int steps,
                                pndm_sampler **out, pndm_error *err);
/* pndm_sampler_create with the default sampler (PNDM): steps+9 model calls (steps+1 with
 * skip_prk_steps; 1 call for steps=1). */
pndm_status pndm_sampler_create_pndm(const pndm_scheduler_config *cfg, int steps, pndm_sampler **out, pndm_error *err);
void pndm_sampler_free(pndm_sampler *s);
const char *pndm_sampler_name(const pndm_sampler *s);

#define PNDM_CALLS_ADAPTIVE (-1)
/* Model calls of a run: fixed at creation, or PNDM_CALLS_ADAPTIVE (pf: the solver decides). */
int pndm_sampler_num_calls(const pndm_sampler *s);
/* Steps the method takes: N for diffusers' samplers, ceil(T / (T // N)) for the paper's
 * methods, 0 for pf (adaptive). */
int pndm_sampler_num_steps(const pndm_sampler *s);
/* Model calls made since the start (or reset). */
int pndm_sampler_calls_made(const pndm_sampler *s);
/* 1 once the run is complete (every call made). */
int pndm_sampler_done(const pndm_sampler *s);
/* Sample-sized float buffers the sampler keeps besides the sample (for memory estimates). */
int pndm_sampler_history(const pndm_sampler *s);
/* Channels the model must output for C input channels: 2*C for ddpm with a learned variance. */
int pndm_sampler_model_channels(const pndm_sampler *s, int C);
/* The model's time at call i (all B images get the same): the integer timestep for diffusers'
 * samplers; the paper's methods give fractional midpoints for odd skips and pf t*(T-1). For pf
 * call i is known once calls 0..i-1 are made (asking for another aborts: a programmer error). */
float pndm_sampler_time(const pndm_sampler *s, int call);
/* The same as an integer (diffusers' samplers; the paper's methods: truncated toward zero). */
int64_t pndm_sampler_timestep(const pndm_sampler *s, int call);

/* Start a run: draw the initial noise x_T into sample (n = B*per floats, (B, C, H, W)) as
 * diffusers' randn_tensor does (per_image_seeds = 0: one generator seeded `seed` for the whole
 * batch; 1: image i from its own generator seeded seed+i) and keep the generator(s) for the
 * noise the method draws in its steps (ddpm; ddim with eta > 0), consumed in diffusers' order.
 * Clears the history. Required for ddim/ddpm; the others may also be stepped without it. */
pndm_status pndm_sampler_start(pndm_sampler *s, uint64_t seed, int per_image_seeds, int B, size_t n, float *sample,
                               pndm_error *err);
/* One model call's step: sample (n floats) holds the model input of call i on entry, and on
 * return the input of call i+1 (after the last call: the final sample). model_out holds
 * n * model_channels / C floats. Calls must be made in order 0, 1, ... */
pndm_status pndm_sampler_step(pndm_sampler *s, int call, const float *model_out, float *sample, size_t n,
                              pndm_error *err);
/* Restart at call 0 (clears the history; the generators of pndm_sampler_start are dropped). */
void pndm_sampler_reset(pndm_sampler *s);

/* One line: the scheduler configuration as the sampler resolved it, e.g.
 * "DDIMScheduler(num_train_timesteps=1000, ...)" (pndm: pndm_scheduler_config_describe; the
 * sampler parameters such as eta are not part of it). */
void pndm_sampler_describe(const pndm_sampler *s, char *buf, size_t size);
/* The resolved schedule: steps and the model time of every call ("20 steps, 20 calls: t = 950,
 * 900, ..."), for -v. */
void pndm_sampler_schedule(const pndm_sampler *s, char *buf, size_t size);
/* The config keys this sampler does not read, "clip_sample, variance_type" ("" if none). */
void pndm_sampler_ignored_keys(const pndm_sampler *s, char *buf, size_t size);

/* ---------------------------------------------------------------------------------------- */
/* Model: a UNet2DModel (diffusers 0.30 semantics) and its scheduler config.                  */

typedef struct pndm_model pndm_model;

/* Load from what diffusers loads a UNet2DModel from, found offline as diffusers and
 * huggingface_hub find it: a Hub id ("google/ddpm-cifar10-32", read from the local Hugging Face
 * cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub; never downloaded), a
 * cache repository folder (models--ORG--NAME) or snapshot folder, a pipeline folder
 * (model_index.json; components in unet/ and scheduler/, or at the root as in the google/ddpm-*
 * repositories), a model folder (config.json + diffusion_pytorch_model.safetensors, .bin, or
 * their sharded *.index.json), a weights file with config.json beside it (.safetensors or a
 * PyTorch .bin, zip or legacy format, read by a restricted unpickler that never runs anything),
 * or a pndm single-file model (.safetensors with the config in __metadata__). Old attention
 * names (query/key/value/proj_attn) are renamed as diffusers does. Everything is validated
 * before use. */
pndm_status pndm_model_load(const char *path, pndm_model **out, pndm_error *err);

/* How a model is found and run; pndm_model_load uses pndm_model_default_params(). The kernel
 * choices are parameters of the model (set once at load, never global state): two models may
 * run side by side with different kernels. */
typedef enum pndm_kernel {
    PNDM_KERNEL_AUTO = 0, /* the best path the CPU has */
    PNDM_KERNEL_GENERIC,  /* portable C */
    PNDM_KERNEL_AVX2,
    PNDM_KERNEL_AVX512
} pndm_kernel;
typedef enum pndm_gemm {
    PNDM_GEMM_AUTO = 0, /* native where the own kernels have a vector path, else OpenBLAS if built in */
    PNDM_GEMM_NATIVE,   /* pndm's own GEMM tiles */
    PNDM_GEMM_OPENBLAS  /* cblas_sgemm (PNDM_BLAS builds only) */
} pndm_gemm;
typedef struct pndm_model_params {
    const char *revision; /* Hub ids: a branch under refs/ or a commit hash (NULL: "main") */
    const char *variant;  /* diffusers variant: diffusion_pytorch_model.<variant>.safetensors (NULL: none) */
    pndm_kernel kernel;   /* ISA path of the own kernels (AUTO) */
    pndm_gemm gemm;       /* matrix-product backend (AUTO) */
    int winograd;         /* 1: Winograd for the 3x3 convolutions where it applies (default); 0: direct only */
} pndm_model_params;
pndm_model_params pndm_model_default_params(void);
pndm_status pndm_model_load_ex(const char *path, const pndm_model_params *params, pndm_model **out, pndm_error *err);
/* The same from a memory buffer holding a single-file model (not copied; must outlive m). */
pndm_status pndm_model_load_memory(const void *data, size_t size, const char *name, pndm_model **out, pndm_error *err);
void pndm_model_free(pndm_model *m);

int pndm_model_in_channels(const pndm_model *m);
int pndm_model_out_channels(const pndm_model *m);
int pndm_model_sample_size(const pndm_model *m);
size_t pndm_model_param_count(const pndm_model *m);
const char *pndm_model_path(const pndm_model *m);
/* The weights' identity: SHA-256 (64 lowercase hex digits) of the tensors in name order (name,
 * dtype, shape, data), computed once at load in the same pass as the NaN/Inf scan. It does not
 * depend on the file format, the layout (single file, model or pipeline folder), the path or
 * the tensor order in the file: the same weights give the same id (F16 and F32 copies differ). */
const char *pndm_model_sha256(const pndm_model *m);
/* The scheduler config stored with the model (diffusers' PNDMScheduler defaults if none was
 * stored), parsed into *cfg (free with pndm_scheduler_config_free). */
pndm_status pndm_model_get_scheduler_config(const pndm_model *m, pndm_scheduler_config *cfg, pndm_error *err);
/* Path of the bundled default model: $PNDM_MODEL if set, else the installed copy
 * (<prefix>/share/pndm/fashion_mnist.safetensors), else the source tree's weights/ copy;
 * NULL if none exists. */
const char *pndm_default_model_path(void);

/* One UNet forward. x: (B, C_in, H, W); t: B timesteps (one per element; pass the same value B
 * times for a shared one); out: (B, C_out, H, W). n_threads <= 0: the default (physical cores).
 * H and W must be divisible by 2^(levels-1). An output holding NaN or Inf (weights that overflow
 * float32, or NaN inputs) is refused with PNDM_ERR_MODEL naming the image, so neither this call
 * nor pndm_generate ever returns non-finite results. */
pndm_status pndm_unet_forward(const pndm_model *m, const float *x, int B, int H, int W, const float *t, float *out,
                              int n_threads, pndm_error *err);

/* Default thread count: the number of physical cores among the CPUs this process may run on
 * (SMT siblings count once). The forward keeps one pool of that many threads per model between
 * calls. */
int pndm_default_threads(void);
/* The kernels a model runs on (its pndm_model_params, resolved on this CPU), for -v and logs:
 * the ISA path "avx512", "avx2" or "generic", with "+openblas" when the matrix products go
 * through OpenBLAS. Results are byte-identical for any thread count or batch split on one
 * machine with one choice, not across choices. 3x3 convolutions with >= 16 channels on images
 * of >= 8x8 use Winograd F(4x4,3x3) or F(2x2,3x3) unless params.winograd is 0. */
const char *pndm_model_kernel_path(const pndm_model *m);
/* What pndm_model_kernel_path gives a model loaded with pndm_model_default_params() on this CPU
 * (the best ISA path it has; OpenBLAS where that is the generic one and OpenBLAS is built in). */
const char *pndm_kernel_path(void);

/* ---------------------------------------------------------------------------------------- */
/* Generation (PNDMPipeline, DDIMPipeline, DDPMPipeline, the paper's runner).                */

/* After each model call: total_calls is PNDM_CALLS_ADAPTIVE for pf; t = the call's model time. */
typedef void (*pndm_progress_fn)(int call, int total_calls, double t, void *user);

typedef struct pndm_gen_params {
    int steps;                              /* inference steps (50) */
    int batch;                              /* images (1) */
    uint64_t seed;                          /* torch.manual_seed(seed) (0) */
    int per_image_seeds;                    /* 0: one generator for the batch; 1: image i uses seed+i */
    int n_threads;                          /* <= 0: pndm_default_threads() */
    const pndm_scheduler_config *scheduler; /* NULL: the model's */
    pndm_sampler_params sampler;            /* pndm_sampler_default_params(): PNDM */
    pndm_progress_fn progress;              /* called after each UNet call (may be NULL) */
    void *progress_user;
    /* If non-NULL: checked before every model call; non-zero stops the run with
     * PNDM_ERR_INTERRUPTED. A signal handler may set it (sig_atomic_t). */
    const volatile sig_atomic_t *cancel;
} pndm_gen_params;

pndm_gen_params pndm_gen_default_params(void);
/* Number of floats in the noise / latents buffers: batch * C_in * S * S. */
size_t pndm_gen_latent_count(const pndm_model *m, const pndm_gen_params *p);
/* Bytes of memory the run will need (weights excluded), for checks before allocating. */
size_t pndm_gen_memory_estimate(const pndm_model *m, const pndm_gen_params *p);
/* Runs the pipeline. noise_out (may be NULL): the initial noise; latents_out: the final sample
 * before clamping. Both (B, C, S, S). */
pndm_status pndm_generate(const pndm_model *m, const pndm_gen_params *p, float *noise_out, float *latents_out,
                          pndm_error *err);

/* The same loop around any denoiser (a model of your own, or a stand-in in tests):
 * fn(x (B,C,S,S), B, C, S, t (B model times), out (B,C',S,S) = predicted noise, v or x0 as the
 * config's prediction_type says; C' = pndm_sampler_model_channels: C, or 2*C for ddpm with a
 * learned variance). cfg is required here (p->scheduler is ignored). */
typedef pndm_status (*pndm_denoise_fn)(const float *x, int B, int C, int S, const float *t, float *out, void *user,
                                       pndm_error *err);
pndm_status pndm_generate_custom(pndm_denoise_fn fn, void *user, int C, int S, const pndm_scheduler_config *cfg,
                                 const pndm_gen_params *p, float *noise_out, float *latents_out, pndm_error *err);

/* image = clamp(latent/2 + 0.5, 0, 1), transposed to (B, H, W, C) (diffusers output_type="np"). */
void pndm_latents_to_images(const float *latents, int B, int C, int H, int W, float *images);
/* 8-bit pixels as numpy/PIL: round-half-to-even(image*255). n values. */
void pndm_images_to_u8(const float *images, size_t n, uint8_t *pixels);

#if defined(__GNUC__) && !defined(PNDM_NO_VISIBILITY)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif /* PNDM_H */
