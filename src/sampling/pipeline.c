/* The pipeline loop around any denoiser and any sampler: x = x_T (the sampler draws it as
 * diffusers' randn_tensor does); until the sampler is done: eps = f(x, t); x = step(eps, x).
 * Mirrors diffusers 0.30.3 PNDMPipeline / DDIMPipeline / DDPMPipeline.__call__ and the paper's
 * Runner.sample_image; the sampler says how many calls, at which (float) times, with how many
 * output channels. It knows nothing of the UNet: api/generate.c plugs the model in. */
#define _XOPEN_SOURCE 700
#include "core.h"

#include <limits.h>
#include <math.h>
#include <string.h>

pndm_gen_params pndm_gen_default_params(void) {
    pndm_gen_params p;
    memset(&p, 0, sizeof p);
    p.steps = 50;
    p.batch = 1;
    p.seed = 0;
    p.per_image_seeds = 0;
    p.n_threads = 0;
    p.sampler = pndm_sampler_default_params();
    return p;
}

pndm_status pndm_generate_custom(pndm_denoise_fn fn, void *user, int C, int S, const pndm_scheduler_config *cfg,
                                 const pndm_gen_params *p, float *noise_out, float *latents_out, pndm_error *err) {
    if (!fn || !cfg || !p || !latents_out) return core_fail(err, PNDM_ERR_USAGE, "pndm_generate: NULL argument");
    if (p->batch < 1) return core_fail(err, PNDM_ERR_USAGE, "batch must be >= 1 (got %d)", p->batch);
    if (p->steps < 1) return core_fail(err, PNDM_ERR_USAGE, "steps must be >= 1 (got %d)", p->steps);
    if (C < 1 || S < 1) return core_fail(err, PNDM_ERR_USAGE, "bad sample shape C=%d S=%d", C, S);
    const int B = p->batch;
    size_t per, n, n_out;
    if (!core_mul_size((size_t)C, (size_t)S, &per) || !core_mul_size(per, (size_t)S, &per) ||
        !core_mul_size(per, (size_t)B, &n) || n > SIZE_MAX / sizeof(float) / 2)
        return core_fail(err, PNDM_ERR_NOMEM, "batch %d is too large", B);

    pndm_sampler *sampler = NULL;
    pndm_status st = pndm_sampler_create(&p->sampler, cfg, p->steps, &sampler, err);
    if (st) return st;
    const int C_out = pndm_sampler_model_channels(sampler, C);
    n_out = n / (size_t)C * (size_t)C_out;
    float *eps = malloc(n_out * sizeof *eps); // (B, C_out, S, S) model output
    float *tvec = malloc((size_t)B * sizeof *tvec);
    if (!eps || !tvec) {
        free(eps);
        free(tvec);
        pndm_sampler_free(sampler);
        return core_fail(err, PNDM_ERR_NOMEM, "cannot allocate %zu bytes for batch %d", n_out * sizeof(float), B);
    }
    float *x = latents_out; // (B, C, S, S) the model input, updated in place
    // x_T: diffusers randn_tensor, one generator for the batch or one per image (seed + i)
    st = pndm_sampler_start(sampler, p->seed, p->per_image_seeds, B, n, x, err);
    if (!st && noise_out) memcpy(noise_out, x, n * sizeof *x);

    const int total = pndm_sampler_num_calls(sampler); // PNDM_CALLS_ADAPTIVE for pf
    for (int i = 0; !st && !pndm_sampler_done(sampler); i++) {
        if (p->cancel && *p->cancel) {
            if (total == PNDM_CALLS_ADAPTIVE)
                st = core_fail(err, PNDM_ERR_INTERRUPTED, "interrupted at model call %d (adaptive)", i + 1);
            else
                st = core_fail(err, PNDM_ERR_INTERRUPTED, "interrupted at UNet call %d of %d", i + 1, total);
            break;
        }
        const float t = pndm_sampler_time(sampler, i);
        for (int b = 0; b < B; b++) tvec[b] = t;
        st = fn(x, B, C, S, tvec, eps, user, err); // eps = unet(x, t)
        if (st) break;
        st = pndm_sampler_step(sampler, i, eps, x, n, err); // x = the next model input (or x_0)
        if (st) break;
        if (p->progress) p->progress(i + 1, total, (double)t, p->progress_user);
    }
    free(eps);
    free(tvec);
    pndm_sampler_free(sampler);
    return st;
}

/* diffusers: image = (image / 2 + 0.5).clamp(0, 1); image.cpu().permute(0, 2, 3, 1).numpy() */
void pndm_latents_to_images(const float *latents, int B, int C, int H, int W, float *images) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float v = latents[(((size_t)b * C + c) * H + y) * W + x] / 2.0f + 0.5f;
                    v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); // clamp; NaN stays NaN
                    images[(((size_t)b * H + y) * W + x) * C + c] = v;
                }
}

/* diffusers numpy_to_pil: (images * 255).round().astype("uint8"); np.round is half-to-even,
 * which is rintf in the default rounding mode. */
void pndm_images_to_u8(const float *images, size_t n, uint8_t *pixels) {
    for (size_t i = 0; i < n; i++) {
        float v = images[i] * 255.0f;
        v = rintf(v);
        if (!(v >= 0.0f)) v = 0.0f; /* NaN -> 0 (numpy casts NaN to 0 on x86) */
        if (v > 255.0f) v = 255.0f;
        pixels[i] = (uint8_t)v;
    }
}
