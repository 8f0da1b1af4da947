/* pndm.h — diffusion image generation on the CPU with PNDM, a native counterpart of
 * Hugging Face diffusers' PNDMPipeline (UNet2DModel + PNDMScheduler).
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
 *     does not depend on the batch size (every image is computed by the same operations).
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
/* Schedulers. A schedule (betas, timesteps) is kept apart from the stepping method; the      */
/* pipeline only sees the sampler interface below.                                            */

typedef enum { PNDM_BETA_LINEAR, PNDM_BETA_SCALED_LINEAR, PNDM_BETA_SQUAREDCOS_CAP_V2 } pndm_beta_schedule;
typedef enum { PNDM_PRED_EPSILON, PNDM_PRED_V } pndm_prediction_type;
typedef enum { PNDM_SPACING_LEADING, PNDM_SPACING_LINSPACE, PNDM_SPACING_TRAILING } pndm_spacing;

typedef struct pndm_scheduler_config {
    int num_train_timesteps;              /* 1000 */
    double beta_start, beta_end;          /* 0.0001, 0.02 */
    pndm_beta_schedule beta_schedule;     /* linear */
    float *trained_betas;                 /* NULL, or num_train_timesteps values (owned) */
    int skip_prk_steps;                   /* 0 */
    int set_alpha_to_one;                 /* 0 */
    pndm_prediction_type prediction_type; /* epsilon */
    pndm_spacing timestep_spacing;        /* leading */
    int steps_offset;                     /* 0 */
} pndm_scheduler_config;

/* diffusers' PNDMScheduler defaults. */
pndm_scheduler_config pndm_scheduler_default_config(void);
/* Parse a scheduler_config.json text (any diffusers scheduler's; keys PNDMScheduler ignores are
 * accepted, invalid values refused by name with PNDM_ERR_MODEL). `source` names the file in
 * messages. *cfg is written only on success (then free it with pndm_scheduler_config_free). */
pndm_status pndm_scheduler_config_parse(const char *json, size_t len, const char *source, pndm_scheduler_config *cfg,
                                        pndm_error *err);
void pndm_scheduler_config_free(pndm_scheduler_config *cfg); /* frees trained_betas */
/* One line describing the config, for PNG metadata and logs. */
void pndm_scheduler_config_describe(const pndm_scheduler_config *cfg, char *buf, size_t size);

typedef struct pndm_sampler pndm_sampler;
/* PNDM (PRK warm-up then PLMS) for `steps` inference steps: steps+9 model calls
 * (steps+1 with skip_prk_steps; 1 call for steps=1). Refused (PNDM_ERR_USAGE): steps outside
 * 1..num_train_timesteps, steps < 4 with PRK, and step counts for which diffusers fails or uses
 * timesteps outside 0..num_train_timesteps-1 (steps_offset too large, some "trailing" counts);
 * a config whose alphas_cumprod makes a step divide by zero: PNDM_ERR_MODEL. */
pndm_status pndm_sampler_create_pndm(const pndm_scheduler_config *cfg, int steps, pndm_sampler **out, pndm_error *err);
void pndm_sampler_free(pndm_sampler *s);
int pndm_sampler_num_calls(const pndm_sampler *s);
/* Timestep given to the model at call i (0 <= i < num_calls). */
int64_t pndm_sampler_timestep(const pndm_sampler *s, int call);
/* One scheduler step for call i: sample (n floats, in/out) <- step(model_out, t_i, sample).
 * Calls must be made in order 0, 1, ... */
pndm_status pndm_sampler_step(pndm_sampler *s, int call, const float *model_out, float *sample, size_t n,
                              pndm_error *err);
/* Restart at call 0 (clears the multistep history). */
void pndm_sampler_reset(pndm_sampler *s);

/* ---------------------------------------------------------------------------------------- */
/* Model: a UNet2DModel (diffusers 0.30 semantics) and its scheduler config.                  */

typedef struct pndm_model pndm_model;

/* Load from: a pndm single-file model (.safetensors with the config in __metadata__), a
 * diffusers model folder (config.json + diffusion_pytorch_model.safetensors), a diffusers
 * pipeline folder (model_index.json + unet/ + scheduler/), or a diffusers .safetensors file
 * with config.json beside it. Everything is validated before use. */
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
/* Generation (PNDMPipeline).                                                                 */

typedef void (*pndm_progress_fn)(int call, int total_calls, int64_t timestep, void *user);

typedef struct pndm_gen_params {
    int steps;                              /* inference steps (50) */
    int batch;                              /* images (1) */
    uint64_t seed;                          /* torch.manual_seed(seed) (0) */
    int per_image_seeds;                    /* 0: one generator for the batch; 1: image i uses seed+i */
    int n_threads;                          /* <= 0: pndm_default_threads() */
    const pndm_scheduler_config *scheduler; /* NULL: the model's */
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
 * fn(x (B,C,S,S), B, C, S, t (B timesteps), out (B,C,S,S) = predicted noise or v). cfg is
 * required here (p->scheduler is ignored). */
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
