// ctest-label: unit
/* The samplers' configuration and limits:
 *  - scheduler_config.json keys of DDIMScheduler / DDPMScheduler (values, defaults, refusals by
 *    name, class-dependent values), the keys a file gave and the ones no scheduler reads;
 *  - what each sampler ignores (for -v), DDIM's own set_alpha_to_one default;
 *  - the paper's step counts: the crash set refused with nearby counts that work, the call
 *    counts and fractional model times; what each sampler refuses;
 *  - the run interface: start, adaptive pf, out-of-order and post-run calls, reset. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "pndm.h"
#include "scheduler.h"

#include <stdint.h>

static pndm_status parse(const char *json, pndm_scheduler_config *cfg, pndm_error *err) {
    return pndm_scheduler_config_parse(json, strlen(json), "s.json", cfg, err);
}

static void expect_refused(const char *json, const char *want) {
    pndm_scheduler_config cfg;
    pndm_error err;
    memset(&err, 0, sizeof err);
    pndm_status st = parse(json, &cfg, &err);
    CHECK_MSG(st == PNDM_ERR_MODEL, "accepted or wrong code %d: %s", (int)st, json);
    CHECK_CONTAINS(err.msg, "s.json");
    CHECK_CONTAINS(err.msg, want);
}

static pndm_sampler *make(const char *name, const pndm_scheduler_config *cfg, int steps, pndm_status want,
                          pndm_error *err) {
    pndm_sampler_params p = pndm_sampler_default_params();
    p.name = name;
    pndm_sampler *s = NULL;
    pndm_status st = pndm_sampler_create(&p, cfg, steps, &s, err);
    CHECK_MSG(st == want, "%s steps %d: got %d (%s), want %d", name, steps, (int)st, st ? err->msg : "ok", (int)want);
    return s;
}

static void test_config_keys(void) {
    pndm_scheduler_config c;
    pndm_error err;
    /* DDIMScheduler's keys */
    CHECK(parse("{\"_class_name\": \"DDIMScheduler\", \"_diffusers_version\": \"0.30.3\", \"clip_sample\": false, "
                "\"clip_sample_range\": 2.5, \"thresholding\": true, \"dynamic_thresholding_ratio\": 0.9, "
                "\"sample_max_value\": 3, \"set_alpha_to_one\": false, \"prediction_type\": \"sample\", "
                "\"rescale_betas_zero_snr\": true, \"use_karras_sigmas\": false, \"foo\": [1]}",
                &c, &err) == PNDM_OK);
    CHECK(!strcmp(c.class_name, "DDIMScheduler"));
    CHECK(!c.clip_sample && c.clip_sample_range == 2.5 && c.thresholding && c.dynamic_thresholding_ratio == 0.9 &&
          c.sample_max_value == 3 && c.prediction_type == PNDM_PRED_SAMPLE && c.rescale_betas_zero_snr);
    CHECK(c.given ==
          (PNDM_KEY_CLIP_SAMPLE | PNDM_KEY_CLIP_SAMPLE_RANGE | PNDM_KEY_THRESHOLDING |
           PNDM_KEY_DYNAMIC_THRESHOLDING_RATIO | PNDM_KEY_SAMPLE_MAX_VALUE | PNDM_KEY_SET_ALPHA_TO_ONE |
           PNDM_KEY_PREDICTION_TYPE | PNDM_KEY_RESCALE_BETAS_ZERO_SNR));
    CHECK(c.unknown_keys && !strcmp(c.unknown_keys, "use_karras_sigmas, foo"));
    char buf[1024];
    pndm_sampler *s = make("ddim", &c, 10, PNDM_OK, &err);
    pndm_sampler_ignored_keys(s, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "use_karras_sigmas, foo"), "ddim ignores '%s'", buf);
    pndm_sampler_describe(s, buf, sizeof buf);
    CHECK_CONTAINS(buf, "DDIMScheduler(num_train_timesteps=1000");
    CHECK_CONTAINS(buf, "clip_sample=false, clip_sample_range=2.5, thresholding=true");
    CHECK_CONTAINS(buf, "prediction_type=sample");
    pndm_sampler_free(s);
    /* the same file read by PNDM: sample prediction refused; by ddpm: set_alpha_to_one ignored */
    make("pndm", &c, 10, PNDM_ERR_MODEL, &err);
    CHECK_CONTAINS(err.msg, "prediction_type \"sample\" is not supported by PNDMScheduler");
    s = make("ddpm", &c, 10, PNDM_OK, &err);
    pndm_sampler_ignored_keys(s, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "set_alpha_to_one, use_karras_sigmas, foo"), "ddpm ignores '%s'", buf);
    pndm_sampler_free(s);
    s = make("f-pndm", &c, 10, PNDM_OK, &err);
    pndm_sampler_ignored_keys(s, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf,
                      "set_alpha_to_one, prediction_type, clip_sample, clip_sample_range, thresholding, "
                      "dynamic_thresholding_ratio, sample_max_value, rescale_betas_zero_snr, use_karras_sigmas, "
                      "foo"),
              "f-pndm ignores '%s'", buf);
    pndm_sampler_free(s);
    pndm_scheduler_config_free(&c);

    /* DDPMScheduler: sigmoid betas, every variance type */
    static const char *const vts[] = {"fixed_small",     "fixed_small_log", "fixed_large",
                                      "fixed_large_log", "learned",         "learned_range"};
    for (int i = 0; i < 6; i++) {
        char j[256];
        snprintf(j, sizeof j,
                 "{\"_class_name\": \"DDPMScheduler\", \"beta_schedule\": \"sigmoid\", \"variance_type\": \"%s\"}",
                 vts[i]);
        CHECK(parse(j, &c, &err) == PNDM_OK && c.variance_type == (pndm_variance_type)i &&
              c.beta_schedule == PNDM_BETA_SIGMOID);
        s = make("ddpm", &c, 10, i == PNDM_VARIANCE_FIXED_LARGE_LOG ? PNDM_ERR_MODEL : PNDM_OK, &err);
        if (i == PNDM_VARIANCE_FIXED_LARGE_LOG) CHECK_CONTAINS(err.msg, "fixed_large_log");
        if (s) CHECK(pndm_sampler_model_channels(s, 3) == (i >= PNDM_VARIANCE_LEARNED ? 6 : 3));
        pndm_sampler_free(s);
        /* sigmoid is DDPM's only */
        make("pndm", &c, 10, PNDM_ERR_MODEL, &err);
        CHECK_CONTAINS(err.msg, "sigmoid");
        make("ddim", &c, 10, PNDM_ERR_MODEL, &err);
        make("fon", &c, 10, PNDM_ERR_MODEL, &err);
        CHECK_CONTAINS(err.msg, "sigmoid");
        pndm_scheduler_config_free(&c);
    }
    /* class-dependent values: without the class, PNDMScheduler's */
    expect_refused("{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"sigmoid\"}",
                   "\"beta_schedule\": unsupported value \"sigmoid\" (DDIMScheduler supports linear, scaled_linear, "
                   "squaredcos_cap_v2)");
    expect_refused("{\"prediction_type\": \"sample\"}", "(PNDMScheduler supports epsilon, v_prediction)");
    CHECK(parse("{\"_class_name\": \"DDPMScheduler\", \"prediction_type\": \"sample\"}", &c, &err) == PNDM_OK);
    pndm_scheduler_config_free(&c);
    /* refusals by name */
    expect_refused("{\"clip_sample\": 1}", "\"clip_sample\": expected true or false, got a number");
    expect_refused("{\"clip_sample_range\": 0}", "\"clip_sample_range\": must be a number > 0 (got 0)");
    expect_refused("{\"clip_sample_range\": \"1\"}", "\"clip_sample_range\": expected a number > 0, got a string");
    expect_refused("{\"dynamic_thresholding_ratio\": 1.5}",
                   "\"dynamic_thresholding_ratio\": must be a number in [0, 1]");
    expect_refused("{\"sample_max_value\": -1}", "\"sample_max_value\": must be a number > 0");
    expect_refused("{\"thresholding\": null}", "\"thresholding\": expected true or false, got null");
    expect_refused("{\"variance_type\": \"fixed\"}",
                   "\"variance_type\": unsupported value \"fixed\" (PNDMScheduler supports fixed_small, "
                   "fixed_small_log, fixed_large, fixed_large_log, learned, learned_range)");
    expect_refused("{\"rescale_betas_zero_snr\": \"no\"}", "\"rescale_betas_zero_snr\": expected true or false");
    expect_refused("{\"_class_name\": 3}", "\"_class_name\": expected a string, got a number");
    expect_refused("{\"foo\": 1, \"foo\": 2}", "\"foo\": appears more than once"); /* any key, once */
    /* a hostile number of unknown keys: a bounded list */
    size_t big = 200000;
    char *j = malloc(big * 12 + 16), *p = j;
    p += sprintf(p, "{");
    for (size_t i = 0; i < big / 12; i++) p += sprintf(p, "%s\"k%zu\": 0", i ? ", " : "", i);
    sprintf(p, "}");
    CHECK(parse(j, &c, &err) == PNDM_OK && c.unknown_keys && strlen(c.unknown_keys) < 2100 &&
          strstr(c.unknown_keys, ", ..."));
    pndm_scheduler_config_free(&c);
    free(j);
}

static void test_ddim_defaults(void) {
    pndm_error err;
    pndm_scheduler_config c = pndm_scheduler_default_config();
    /* no set_alpha_to_one in the file: DDIMScheduler's default (true) -> final alpha 1 */
    pndm_sampler *s = make("ddim", &c, 10, PNDM_OK, &err);
    CHECK(sampler_final_alpha_cumprod(s) == 1.0f);
    pndm_sampler_free(s);
    s = make("pndm", &c, 10, PNDM_OK, &err);
    CHECK(sampler_final_alpha_cumprod(s) == sampler_alphas_cumprod(s)[0]);
    pndm_sampler_free(s);
    /* given as false: kept */
    c.given |= PNDM_KEY_SET_ALPHA_TO_ONE;
    s = make("ddim", &c, 10, PNDM_OK, &err);
    CHECK(sampler_final_alpha_cumprod(s) == sampler_alphas_cumprod(s)[0]);
    pndm_sampler_free(s);
    /* the default sampler's description is the PNDM config's */
    char a[512], b[512];
    c = pndm_scheduler_default_config();
    s = make(NULL, &c, 10, PNDM_OK, &err);
    CHECK(!strcmp(pndm_sampler_name(s), "pndm"));
    pndm_sampler_describe(s, a, sizeof a);
    pndm_scheduler_config_describe(&c, b, sizeof b);
    CHECK(!strcmp(a, b));
    pndm_sampler_free(s);
    make("euler", &c, 10, PNDM_ERR_USAGE, &err);
    CHECK_CONTAINS(err.msg,
                   "unknown sampler 'euler' (samplers: pndm, ddim, ddpm, ddim-paper, s-pndm, f-pndm, fon, pf)");
    pndm_sampler_params p = pndm_sampler_default_params();
    p.name = "ddim";
    p.eta = NAN;
    CHECK(pndm_sampler_create(&p, &c, 10, &s, &err) == PNDM_ERR_USAGE && s == NULL);
    /* the listing */
    CHECK(pndm_sampler_count() == 8);
    for (int i = 0; i < pndm_sampler_count(); i++) {
        const pndm_sampler_info *in = pndm_sampler_get_info(i);
        CHECK(in && in->name && in->summary && in->calls && in->reference);
        /* only pf decides for the whole batch (one adaptive step size): the others' image i
         * does not depend on the batch (test_sampler_pipeline checks that) */
        CHECK_MSG(in->batch_coupled == !strcmp(in->name, "pf"), "%s: batch_coupled %d", in->name, in->batch_coupled);
    }
    CHECK(pndm_sampler_get_info(8) == NULL && pndm_sampler_get_info(-1) == NULL);
    CHECK(pndm_sampler_find_info("pf") && !strcmp(pndm_sampler_find_info("pf")->name, "pf"));
    CHECK(pndm_sampler_find_info("pf")->batch_coupled == 1 && pndm_sampler_find_info("ddim")->batch_coupled == 0);
    CHECK(!strcmp(pndm_sampler_find_info(NULL)->name, "pndm"));
    CHECK(pndm_sampler_find_info("PF") == NULL && pndm_sampler_find_info("") == NULL);
}

static int crash(int T, int n) { return (T - 1) % (T / n) == 0; }

static void test_paper_steps(void) {
    pndm_error err;
    pndm_scheduler_config c = pndm_scheduler_default_config();
    static const char *const names[] = {"ddim-paper", "s-pndm", "f-pndm", "fon"};
    int refused = 0;
    for (int n = 1; n <= 1000; n++) {
        pndm_sampler_params p = pndm_sampler_default_params();
        p.name = names[n % 4];
        pndm_sampler *s = NULL;
        pndm_status st = pndm_sampler_create(&p, &c, n, &s, &err);
        CHECK_MSG((st == PNDM_ERR_USAGE) == crash(1000, n) && (st == PNDM_OK) == !crash(1000, n), "n=%d: %d", n,
                  (int)st);
        if (st) {
            refused++;
            CHECK_CONTAINS(err.msg, "cannot be run by the paper's code");
            CHECK_CONTAINS(err.msg, "alphas_cump[1000]");
        } else {
            /* ceil(T / skip) steps; the call counts of NOTES.md §1.4 */
            const int skip = 1000 / n, S = (1000 + skip - 1) / skip, k = n % 4;
            const int want = k == 0 ? S : k == 1 ? S + 1 : S + 3 * (S < 3 ? S : 3);
            CHECK_MSG(pndm_sampler_num_calls(s) == want, "%s n=%d: %d calls, want %d", p.name, n,
                      pndm_sampler_num_calls(s), want);
        }
        pndm_sampler_free(s);
    }
    CHECK_MSG(refused == 599, "%d step counts refused (the paper's code crashes on 599)", refused);
    make("f-pndm", &c, 3, PNDM_ERR_USAGE, &err);
    CHECK_CONTAINS(err.msg, "nearby step counts that work: 2 or 4");
    make("s-pndm", &c, 105, PNDM_ERR_USAGE, &err);
    CHECK_CONTAINS(err.msg, "100 or 112");
    make("fon", &c, 37, PNDM_ERR_USAGE, &err);
    CHECK_CONTAINS(err.msg, "35 or 38");
    make("ddim-paper", &c, 1000, PNDM_ERR_USAGE, &err);
    CHECK_CONTAINS(err.msg, "500 or fewer");
    /* pf has no crash set: steps only choose the tolerance */
    pndm_sampler *s = make("pf", &c, 1000, PNDM_OK, &err);
    CHECK(pndm_sampler_num_calls(s) == PNDM_CALLS_ADAPTIVE && !pndm_sampler_done(s));
    CHECK(pndm_sampler_time(s, 0) == 999.0f);
    char buf[512];
    pndm_sampler_describe(s, buf, sizeof buf);
    CHECK_CONTAINS(buf, "rtol=atol=1e-05");
    pndm_sampler_free(s);
    s = make("pf", &c, 1, PNDM_OK, &err);
    pndm_sampler_describe(s, buf, sizeof buf);
    CHECK_CONTAINS(buf, "rtol=atol=1,");
    pndm_sampler_free(s);
    /* odd skip: fractional midpoints for the model (n = 8: skip 125) */
    s = make("f-pndm", &c, 8, PNDM_OK, &err);
    CHECK(pndm_sampler_num_calls(s) == 17 && pndm_sampler_time(s, 1) == 812.5f && pndm_sampler_timestep(s, 1) == 812);
    CHECK(pndm_sampler_num_steps(s) == 8);
    pndm_sampler_schedule(s, buf, sizeof buf);
    CHECK_CONTAINS(buf, "8 steps, 17 model calls at t = 875, 812.5, 812.5, 750, 750, 687.5");
    pndm_sampler_free(s);
    /* 1 step: the RK midpoint is -0.5, then t_next = -1 */
    s = make("fon", &c, 1, PNDM_OK, &err);
    CHECK(pndm_sampler_num_calls(s) == 4 && pndm_sampler_time(s, 1) == -0.5f && pndm_sampler_time(s, 3) == -1.0f);
    pndm_sampler_free(s);
    /* the paper's schedule needs beta_schedule's counterpart and no trained betas */
    float tb[1000];
    for (int i = 0; i < 1000; i++) tb[i] = 0.01f;
    c.trained_betas = tb;
    make("s-pndm", &c, 10, PNDM_ERR_MODEL, &err);
    CHECK_CONTAINS(err.msg, "trained_betas");
    s = make("ddim", &c, 10, PNDM_OK, &err);
    pndm_sampler_describe(s, buf, sizeof buf);
    CHECK_CONTAINS(buf, "trained_betas=1000 values");
    pndm_sampler_free(s);
}

static void test_run_interface(void) {
    pndm_error err;
    pndm_scheduler_config c = pndm_scheduler_default_config();
    float x[12], x2[12], e[12];
    for (int i = 0; i < 12; i++) e[i] = 0.1f * (float)(i - 6);
    /* ddim with eta > 0 needs the run's generator */
    pndm_sampler_params p = pndm_sampler_default_params();
    p.name = "ddim";
    p.eta = 1.0;
    pndm_sampler *s = NULL;
    CHECK(pndm_sampler_create(&p, &c, 4, &s, &err) == PNDM_OK);
    memset(x, 0, sizeof x);
    CHECK(pndm_sampler_step(s, 0, e, x, 12, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "pndm_sampler_start");
    CHECK(pndm_sampler_start(s, 5, 1, 5, 12, x, &err) == PNDM_ERR_USAGE); /* 12 floats are not 5 images */
    CHECK(pndm_sampler_start(s, 5, 1, 3, 12, x, &err) == PNDM_OK);
    for (int i = 0; !pndm_sampler_done(s); i++) CHECK(pndm_sampler_step(s, i, e, x, 12, &err) == PNDM_OK);
    CHECK(pndm_sampler_calls_made(s) == 4);
    CHECK(pndm_sampler_step(s, 4, e, x, 12, &err) == PNDM_ERR_USAGE); /* past the end */
    /* a restarted run gives the same bits */
    CHECK(pndm_sampler_start(s, 5, 1, 3, 12, x2, &err) == PNDM_OK);
    for (int i = 0; !pndm_sampler_done(s); i++) CHECK(pndm_sampler_step(s, i, e, x2, 12, &err) == PNDM_OK);
    CHECK(memcmp(x, x2, sizeof x) == 0);
    pndm_sampler_free(s);
    /* pf: adaptive; each call's time is known once the previous one is made */
    p.name = "pf";
    CHECK(pndm_sampler_create(&p, &c, 50, &s, &err) == PNDM_OK);
    CHECK(pndm_sampler_start(s, 3, 0, 1, 12, x, &err) == PNDM_OK);
    int calls = 0;
    float prev = 1e9f;
    while (!pndm_sampler_done(s) && calls < 10000) {
        const float t = pndm_sampler_time(s, calls);
        CHECK(t <= 999.0f && t >= 0.0f);
        (void)prev;
        prev = t;
        for (int i = 0; i < 12; i++) e[i] = 0.5f * x[i]; /* eps of a standard normal's score */
        CHECK(pndm_sampler_step(s, calls, e, x, 12, &err) == PNDM_OK);
        calls++;
    }
    int acc, rej, nfev;
    CHECK(sampler_pf_state(s, NULL, NULL, &acc, &rej, &nfev) && nfev == calls && calls == 2 + 6 * (acc + rej));
    CHECK(pndm_sampler_calls_made(s) == calls && pndm_sampler_num_calls(s) == PNDM_CALLS_ADAPTIVE);
    CHECK(pndm_sampler_step(s, calls, e, x, 12, &err) == PNDM_ERR_USAGE);
    for (int i = 0; i < 12; i++) CHECK(isfinite(x[i]));
    pndm_sampler_free(s);
    /* out of order and size changes, on a paper method */
    p.name = "s-pndm";
    CHECK(pndm_sampler_create(&p, &c, 10, &s, &err) == PNDM_OK);
    CHECK(pndm_sampler_step(s, 1, e, x, 12, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_sampler_step(s, 0, e, x, 12, &err) == PNDM_OK);
    CHECK(pndm_sampler_step(s, 1, e, x, 10, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "differs");
    pndm_sampler_reset(s);
    CHECK(pndm_sampler_step(s, 0, e, x, 10, &err) == PNDM_OK);
    pndm_sampler_free(s);
}

int main(void) {
    test_config_keys();
    test_ddim_defaults();
    test_paper_steps();
    test_run_interface();
    return TEST_SUMMARY();
}
