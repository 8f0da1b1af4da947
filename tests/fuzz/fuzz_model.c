/* Fuzz target: the model loader from memory (pndm_model_load_memory: safetensors, the embedded
 * UNet config, the layer plan, tensor binding), then what a caller does with an accepted model:
 * its scheduler config, and for small models one UNet forward and a 2-step generation.
 * Properties: no crash; a refusal carries a message; outputs of a forward are written in full. */
#include "fuzz.h"
#include "model.h"
#include "pndm.h"
#include "pndm_io.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pndm_model *m = NULL;
    pndm_error err = {0};
    pndm_status st = pndm_model_load_memory(data, size, "fuzz.safetensors", &m, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(m == NULL);
        return 0;
    }
    const int C = pndm_model_in_channels(m), Co = pndm_model_out_channels(m), S = pndm_model_sample_size(m);
    FUZZ_CHECK(C >= 1 && Co >= 1 && S >= 1);
    pndm_scheduler_config sc;
    int have_sc = pndm_model_get_scheduler_config(m, &sc, &err) == PNDM_OK;
    if (!have_sc) FUZZ_CHECK(err.msg[0] != 0);
    size_t ws = model_workspace_estimate(m, 1, S, S);
    if (S <= 32 && ws <= ((size_t)16 << 20) && pndm_model_param_count(m) <= 200000) {
        size_t n = (size_t)C * S * S, no = (size_t)Co * S * S;
        float *x = malloc(n * sizeof *x), *y = malloc(no * sizeof *y);
        FUZZ_CHECK(x && y);
        for (size_t i = 0; i < n; i++) x[i] = (float)((int)(i % 7) - 3) * 0.25f;
        for (size_t i = 0; i < no; i++) y[i] = NAN;
        float t = 10.0f;
        st = pndm_unet_forward(m, x, 1, S, S, &t, y, 1, &err);
        if (st != PNDM_OK) FUZZ_CHECK_ERR(st, err);
        free(x);
        free(y);
        if (have_sc && C == Co) {
            pndm_gen_params p = pndm_gen_default_params();
            sc.skip_prk_steps = 1;
            p.steps = 2;
            p.batch = 1;
            p.n_threads = 1;
            p.scheduler = &sc;
            float *lat = malloc(pndm_gen_latent_count(m, &p) * sizeof *lat);
            FUZZ_CHECK(lat);
            st = pndm_generate(m, &p, NULL, lat, &err);
            if (st != PNDM_OK) FUZZ_CHECK_ERR(st, err);
            free(lat);
        }
    }
    if (have_sc) pndm_scheduler_config_free(&sc);
    pndm_model_free(m);
    return 0;
}
