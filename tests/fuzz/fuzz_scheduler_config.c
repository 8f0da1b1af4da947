/* Fuzz target: scheduler_config.json (pndm_scheduler_config_parse, describe), then one of the
 * samplers (chosen by the input's length) built from an accepted config and run through every
 * call on a small two-image sample.
 * Properties: no crash; a refusal carries a message; an accepted config gives a sampler or a
 * refusal with a message, and steps that never produce an error without one. */
#include "fuzz.h"
#include "pndm.h"
#include "pndm_io.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pndm_scheduler_config cfg;
    pndm_error err = {0};
    pndm_status st = pndm_scheduler_config_parse((const char *)data, size, "fuzz/scheduler_config.json", &cfg, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        return 0;
    }
    char desc[512];
    pndm_scheduler_config_describe(&cfg, desc, sizeof desc);
    FUZZ_CHECK(strlen(desc) < sizeof desc);
    /* the schedule costs O(num_train_timesteps): keep executions fast */
    if (cfg.num_train_timesteps <= 5000) {
        /* a step count and a sampler from the input's length, so that mutations reach many */
        static const int counts[] = {1, 2, 3, 4, 5, 7, 10, 20, 50, 100, 999, 1000};
        int steps = counts[size % (sizeof counts / sizeof counts[0])];
        const int n_samplers = pndm_sampler_count();
        pndm_sampler_params sp = pndm_sampler_default_params();
        sp.name = pndm_sampler_get_info((int)((size / 12) % (size_t)n_samplers))->name;
        sp.eta = (double)(size % 3) * 0.5;
        pndm_sampler *s = NULL;
        st = pndm_sampler_create(&sp, &cfg, steps, &s, &err);
        if (st == PNDM_OK) {
            int calls = pndm_sampler_num_calls(s);
            FUZZ_CHECK(calls >= 1 || calls == PNDM_CALLS_ADAPTIVE);
            /* two images of 2 values (model outputs: up to 2 * C channels) */
            float x[4] = {0.5f, -1.0f, 2.0f, 0.0f}, eps[8] = {0.1f, 0.2f, -0.3f, 1.0f, 0.2f, 0.1f, 0.0f, -0.5f};
            st = pndm_sampler_start(s, (uint64_t)size, (int)(size & 1), 2, 4, x, &err);
            FUZZ_CHECK(st == PNDM_OK);
            for (int i = 0; !pndm_sampler_done(s) && i < 1100; i++) {
                const float t = pndm_sampler_time(s, i);
                FUZZ_CHECK(t == t && t >= -1.0f && t <= (float)cfg.num_train_timesteps);
                if (!strcmp(sp.name, "pndm")) {
                    int64_t ti = pndm_sampler_timestep(s, i);
                    FUZZ_CHECK(ti >= 0 && ti < cfg.num_train_timesteps);
                }
                st = pndm_sampler_step(s, i, eps, x, 4, &err);
                if (st != PNDM_OK) {
                    FUZZ_CHECK_ERR(st, err);
                    break;
                }
            }
            char desc2[1024];
            pndm_sampler_describe(s, desc2, sizeof desc2);
            pndm_sampler_ignored_keys(s, desc2, sizeof desc2);
            pndm_sampler_schedule(s, desc2, sizeof desc2);
            pndm_sampler_free(s);
        } else {
            FUZZ_CHECK_ERR(st, err);
        }
    }
    pndm_scheduler_config_free(&cfg);
    return 0;
}
