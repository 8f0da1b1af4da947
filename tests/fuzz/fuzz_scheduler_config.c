/* Fuzz target: scheduler_config.json (pndm_scheduler_config_parse, describe), then a PNDM sampler
 * built from an accepted config and run through every call on a small sample.
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
        /* a step count from the input's length, so that mutations reach many of them */
        static const int counts[] = {1, 2, 3, 4, 5, 7, 10, 20, 50, 100, 999, 1000};
        int steps = counts[size % (sizeof counts / sizeof counts[0])];
        pndm_sampler *s = NULL;
        st = pndm_sampler_create_pndm(&cfg, steps, &s, &err);
        if (st == PNDM_OK) {
            int calls = pndm_sampler_num_calls(s);
            FUZZ_CHECK(calls >= 1);
            float x[4] = {0.5f, -1.0f, 2.0f, 0.0f}, eps[4] = {0.1f, 0.2f, -0.3f, 1.0f};
            for (int i = 0; i < calls && i < 1100; i++) {
                int64_t t = pndm_sampler_timestep(s, i);
                FUZZ_CHECK(t >= 0 && t < cfg.num_train_timesteps);
                st = pndm_sampler_step(s, i, eps, x, 4, &err);
                if (st != PNDM_OK) {
                    FUZZ_CHECK_ERR(st, err);
                    break;
                }
            }
            pndm_sampler_free(s);
        } else {
            FUZZ_CHECK_ERR(st, err);
        }
    }
    pndm_scheduler_config_free(&cfg);
    return 0;
}
