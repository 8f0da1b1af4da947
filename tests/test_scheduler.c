// ctest-label: unit
/* Scheduler config parsing and the PNDM sampler against diffusers 0.30.3 PNDMScheduler
 * (tests/data/scheduler, see README.md there):
 *  - every case: betas, alphas_cumprod, final_alpha_cumprod bit-exact; timesteps exact; the
 *    stand-in model loop's samples within max|err| <= 1e-5 * max(1, max|ref|) per stored step
 *    (bit-exact elements counted and reported);
 *  - plans/: for every step count 1..T of 20 spacing/PRK/offset configs, whether diffusers runs
 *    it, the number of calls and a hash of the (model timestep, alpha index, prev index) per call;
 *  - config parsing: valid configs, extra keys, each invalid value refused by name;
 *  - API misuse: out-of-order calls, size changes, reset. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "pndm.h"
#include "pndm_io.h"
#include "scheduler.h"
#include "core.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* The stand-in model is specified without FMA contraction (GCC's ISO C mode does not contract;
 * clang would on FMA targets). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* The shared golden cases (runs n10, n20, n50) and the extra x_* cases made by
 * scheduler/tools/make_extra.py with the same diffusers (other option combinations, tiny and dense
 * step counts, trained_betas, num_train_timesteps 50 and 999). */
static const struct {
    const char *name;
    int runs[4];
} CASES[] = {
    {"alpha_one_offset1", {10, 20, 50}},
    {"default", {10, 20, 50}},
    {"linspace", {10, 20, 50}},
    {"scaled_linear", {10, 20, 50}},
    {"sd_v1", {10, 20, 50}},
    {"skip_prk", {10, 20, 50}},
    {"squaredcos", {10, 20, 50}},
    {"trailing", {10, 20, 50}},
    {"v_prediction", {10, 20, 50}},
    {"x_squaredcos_skip_trailing", {10, 25}},
    {"x_vpred_skip_linspace_one", {1, 2, 3, 7}},
    {"x_prk_tiny_and_dense", {4, 5, 501}},
    {"x_trained_betas_T50", {4, 10, 16}},
    {"x_scaled_trailing_one", {10, 33}},
    {"x_T999_offset5_skip", {7, 50}},
};

static int load_npy(const char *path, pndm_npy *a, int required) {
    pndm_error err;
    if (pndm_npy_load(path, a, &err) != PNDM_OK) {
        memset(a, 0, sizeof *a);
        if (required) fprintf(stderr, "cannot load %s: %s\n", path, err.msg);
        return 0;
    }
    return 1;
}

static char *read_text(const char *path) {
    char *data = NULL;
    size_t size = 0;
    pndm_error err;
    if (pndm_read_file(path, 0, &data, &size, &err) != PNDM_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, err.msg);
        return NULL;
    }
    return data;
}

static size_t bit_mismatches(const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x, y;
        memcpy(&x, a + i, 4);
        memcpy(&y, b + i, 4);
        bad += x != y;
    }
    return bad;
}

/* The stand-in model f(x, t) of the golden manifests (IEEE double, left to right, glibc libm). */
static void standin(const float *x, size_t n, int64_t t, float *out) {
    double td = (double)t;
    double ab = exp(-(1e-4 * td + 0.5 * (0.02 - 1e-4) * td * td / 1000.0));
    double c = sqrt(1.0 - ab) / (0.16 * ab + 1.0 - ab);
    for (size_t i = 0; i < n; i++) out[i] = (float)(c * (double)x[i] + 0.1 * sin((double)x[i] + td / 100.0));
}

typedef struct {
    size_t stored, exact_steps, elems, exact_elems;
    double max_err, max_rel;
} run_stats;

/* One golden run: sched.set_timesteps(steps); x = x0; x = step(f(x, t), t, x) for every t. */
static void check_run(const char *name, const pndm_scheduler_config *cfg, int steps, const pndm_npy *x0,
                      run_stats *rs) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/scheduler/%s/n%d", PNDM_TEST_DATA, name, steps);
    pndm_npy ts, samples, mos, idx;
    snprintf(path, sizeof path, "%s/timesteps.npy", dir);
    int ok = load_npy(path, &ts, 1);
    snprintf(path, sizeof path, "%s/samples.npy", dir);
    ok &= load_npy(path, &samples, 1);
    CHECK_MSG(ok, "%s n%d: golden files", name, steps);
    if (!ok) {
        pndm_npy_free(&ts);
        pndm_npy_free(&samples);
        return;
    }
    snprintf(path, sizeof path, "%s/model_outputs.npy", dir);
    int have_mo = load_npy(path, &mos, 0);
    snprintf(path, sizeof path, "%s/sample_indices.npy", dir); /* runs with > 200 calls keep some steps */
    int have_idx = load_npy(path, &idx, 0);

    pndm_sampler *s = NULL;
    pndm_error err;
    pndm_status st = pndm_sampler_create_pndm(cfg, steps, &s, &err);
    CHECK_MSG(st == PNDM_OK, "%s n%d: create: %s", name, steps, err.msg);
    if (st != PNDM_OK) goto done;
    const int calls = pndm_sampler_num_calls(s);
    CHECK(ts.dtype == PNDM_NPY_I64);
    CHECK_MSG((size_t)calls == ts.count, "%s n%d: %d calls, diffusers %zu", name, steps, calls, ts.count);
    CHECK(calls == (!cfg->skip_prk_steps ? steps + 9 : steps >= 2 ? steps + 1 : 1));
    if ((size_t)calls != ts.count) goto done;
    const int64_t *want_t = ts.data;
    int t_bad = 0;
    for (int i = 0; i < calls; i++) t_bad += pndm_sampler_timestep(s, i) != want_t[i];
    CHECK_MSG(t_bad == 0, "%s n%d: %d timesteps differ", name, steps, t_bad);

    const size_t n = x0->count;
    const size_t n_stored = samples.shape[0];
    CHECK(samples.count == n_stored * n);
    float *x = malloc(n * sizeof *x), *mo = malloc(n * sizeof *mo);
    memcpy(x, x0->data, n * sizeof *x);
    size_t next = 0, mo_bad = 0, mo_count = 0, mo_err_bad = 0;
    double run_max = 0, run_rel = 0;
    for (int i = 0; i < calls; i++) {
        standin(x, n, pndm_sampler_timestep(s, i), mo);
        if (have_mo && (int64_t)i < mos.shape[0]) {
            /* the stand-in model fed our samples: exact while the samples are; libm may differ */
            const float *ref = (const float *)mos.data + (size_t)i * n;
            double m = test_max_abs(ref, n);
            mo_err_bad += !(test_max_abs_diff(mo, ref, n) <= 1e-5 * (m > 1 ? m : 1));
            mo_bad += bit_mismatches(mo, ref, n);
            mo_count += n;
        }
        st = pndm_sampler_step(s, i, mo, x, n, &err);
        CHECK_MSG(st == PNDM_OK, "%s n%d call %d: %s", name, steps, i, err.msg);
        if (st) break;
        int64_t want_i = have_idx ? ((const int64_t *)idx.data)[next < idx.count ? next : 0] : (int64_t)next;
        if (next < n_stored && want_i == i) {
            const float *ref = (const float *)samples.data + next * n;
            double e = test_max_abs_diff(x, ref, n), m = test_max_abs(ref, n);
            double lim = 1e-5 * (m > 1 ? m : 1);
            CHECK_MSG(e <= lim, "%s n%d call %d: max|err| %.3g > %.3g", name, steps, i, e, lim);
            size_t bad = bit_mismatches(x, ref, n);
            rs->stored++;
            rs->exact_steps += bad == 0;
            rs->elems += n;
            rs->exact_elems += n - bad;
            if (e > run_max) run_max = e;
            if (e / (m > 1 ? m : 1) > run_rel) run_rel = e / (m > 1 ? m : 1);
            next++;
        }
    }
    CHECK_MSG(next == n_stored, "%s n%d: compared %zu of %zu stored steps", name, steps, next, n_stored);
    CHECK_MSG(mo_err_bad == 0, "%s n%d: %zu stand-in model outputs differ from the golden ones", name, steps,
              mo_err_bad);
    if (have_mo)
        printf("%-27s n%d: stand-in model outputs %zu/%zu bit-exact\n", name, steps, mo_count - mo_bad, mo_count);
    if (run_max > rs->max_err) rs->max_err = run_max;
    if (run_rel > rs->max_rel) rs->max_rel = run_rel;
    free(x);
    free(mo);
done:
    pndm_sampler_free(s);
    pndm_npy_free(&ts);
    pndm_npy_free(&samples);
    if (have_mo) pndm_npy_free(&mos);
    if (have_idx) pndm_npy_free(&idx);
}

static void check_case(const char *name, const int *runs) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/scheduler/%s", PNDM_TEST_DATA, name);
    snprintf(path, sizeof path, "%s/scheduler_config.json", dir);
    char *json = read_text(path);
    CHECK_MSG(json != NULL, "%s", path);
    if (!json) return;
    pndm_scheduler_config cfg;
    pndm_error err;
    pndm_status st = pndm_scheduler_config_parse(json, strlen(json), path, &cfg, &err);
    free(json);
    CHECK_MSG(st == PNDM_OK, "%s: %s", name, err.msg);
    if (st) return;

    pndm_npy betas, acp, fin, x0;
    int ok = 1;
    snprintf(path, sizeof path, "%s/betas.npy", dir);
    ok &= load_npy(path, &betas, 1);
    snprintf(path, sizeof path, "%s/alphas_cumprod.npy", dir);
    ok &= load_npy(path, &acp, 1);
    snprintf(path, sizeof path, "%s/final_alpha_cumprod.npy", dir);
    ok &= load_npy(path, &fin, 1);
    snprintf(path, sizeof path, "%s/x0.npy", dir);
    ok &= load_npy(path, &x0, 1);
    CHECK_MSG(ok, "%s: golden files", name);

    pndm_sampler *s = NULL;
    st = pndm_sampler_create_pndm(&cfg, 10, &s, &err);
    CHECK_MSG(st == PNDM_OK, "%s: %s", name, err.msg);
    if (ok && st == PNDM_OK) {
        const size_t T = (size_t)cfg.num_train_timesteps;
        CHECK(betas.count == T && acp.count == T && fin.count == 1);
        size_t bb = bit_mismatches(sampler_betas(s), betas.data, T);
        size_t ab = bit_mismatches(sampler_alphas_cumprod(s), acp.data, T);
        float f = sampler_final_alpha_cumprod(s);
        size_t fb = bit_mismatches(&f, fin.data, 1);
        CHECK_MSG(bb == 0, "%s: %zu of %zu betas differ", name, bb, T);
        CHECK_MSG(ab == 0, "%s: %zu of %zu alphas_cumprod differ", name, ab, T);
        CHECK_MSG(fb == 0, "%s: final_alpha_cumprod %.9g vs %.9g", name, (double)f, (double)*(float *)fin.data);
        run_stats rs;
        memset(&rs, 0, sizeof rs);
        for (size_t r = 0; r < 4 && runs[r]; r++) check_run(name, &cfg, runs[r], &x0, &rs);
        printf("%-27s betas %zu/%zu, alphas_cumprod %zu/%zu bit-exact; samples: %zu stored steps, %zu bit-exact "
               "steps, %zu/%zu bit-exact elements, max|err| %.3g (rel %.3g)\n",
               name, T - bb, T, T - ab, T, rs.stored, rs.exact_steps, rs.exact_elems, rs.elems, rs.max_err, rs.max_rel);
    }
    pndm_sampler_free(s);
    pndm_npy_free(&betas);
    pndm_npy_free(&acp);
    pndm_npy_free(&fin);
    pndm_npy_free(&x0);
    pndm_scheduler_config_free(&cfg);
}

/* x_betas/T<T>_<schedule>.npy: (2, T) betas and alphas_cumprod of PNDMScheduler(T, schedule)
 * for table sizes around the linspace kernel's 16-element blocks and n/2 split. */
static void check_beta_tables(void) {
    static const int Ts[] = {1, 2, 15, 16, 17, 37, 999, 4000};
    static const struct {
        const char *name;
        pndm_beta_schedule bs;
        double b0, b1;
    } sch[] = {{"linear", PNDM_BETA_LINEAR, 0.0003, 0.04},
               {"scaled_linear", PNDM_BETA_SCALED_LINEAR, 0.00085, 0.012},
               {"squaredcos_cap_v2", PNDM_BETA_SQUAREDCOS_CAP_V2, 0.0001, 0.02}};
    size_t tables = 0, values = 0;
    for (size_t i = 0; i < sizeof Ts / sizeof *Ts; i++) {
        for (size_t k = 0; k < 3; k++) {
            char path[1200];
            snprintf(path, sizeof path, "%s/scheduler/x_betas/T%d_%s.npy", PNDM_TEST_DATA, Ts[i], sch[k].name);
            pndm_npy a;
            if (!load_npy(path, &a, 1)) {
                CHECK_MSG(0, "%s", path);
                continue;
            }
            pndm_scheduler_config cfg = pndm_scheduler_default_config();
            cfg.num_train_timesteps = Ts[i];
            cfg.beta_schedule = sch[k].bs;
            cfg.beta_start = sch[k].b0;
            cfg.beta_end = sch[k].b1;
            pndm_sampler *s = NULL;
            pndm_error err;
            CHECK_MSG(pndm_sampler_create_pndm(&cfg, 1, &s, &err) == PNDM_ERR_USAGE, "T%d: 1 PRK step", Ts[i]);
            cfg.skip_prk_steps = 1;
            CHECK_MSG(pndm_sampler_create_pndm(&cfg, 1, &s, &err) == PNDM_OK, "T%d %s: %s", Ts[i], sch[k].name,
                      err.msg);
            const size_t T = (size_t)Ts[i];
            CHECK(a.dtype == PNDM_NPY_F32 && a.count == 2 * T);
            if (s && a.count == 2 * T) {
                size_t bb = bit_mismatches(sampler_betas(s), a.data, T);
                size_t ab = bit_mismatches(sampler_alphas_cumprod(s), (const float *)a.data + T, T);
                CHECK_MSG(bb == 0 && ab == 0, "T%d %s: %zu betas, %zu alphas_cumprod differ", Ts[i], sch[k].name, bb,
                          ab);
                tables++;
                values += 2 * T;
            }
            pndm_sampler_free(s);
            pndm_npy_free(&a);
        }
    }
    printf("beta tables: %zu tables, %zu values compared bit for bit\n", tables, values);
}

/* ---------------------------------------------------------------------------------------- */
/* plans/: what diffusers does for every step count                                          */

static uint64_t fnv_mix(uint64_t h, int64_t v) {
    h ^= (uint64_t)v;
    return h * UINT64_C(1099511628211);
}

static void check_plans(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/scheduler/plans/index.json", PNDM_TEST_DATA);
    char *json = read_text(path);
    CHECK(json != NULL);
    if (!json) return;
    cJSON *root = cJSON_Parse(json);
    free(json);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    CHECK(cJSON_GetArraySize(cases) == 20);
    const cJSON *c;
    size_t configs = 0, counts = 0, accepted = 0, differ = 0;
    cJSON_ArrayForEach(c, cases) {
        const char *file = cJSON_GetObjectItemCaseSensitive(c, "file")->valuestring;
        pndm_scheduler_config cfg = pndm_scheduler_default_config();
        cfg.num_train_timesteps = cJSON_GetObjectItemCaseSensitive(c, "num_train_timesteps")->valueint;
        const char *sp = cJSON_GetObjectItemCaseSensitive(c, "timestep_spacing")->valuestring;
        cfg.timestep_spacing = strcmp(sp, "leading") == 0 ? PNDM_SPACING_LEADING
            : strcmp(sp, "linspace") == 0                 ? PNDM_SPACING_LINSPACE
                                                          : PNDM_SPACING_TRAILING;
        cfg.skip_prk_steps = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "skip_prk_steps"));
        cfg.steps_offset = cJSON_GetObjectItemCaseSensitive(c, "steps_offset")->valueint;
        snprintf(path, sizeof path, "%s/scheduler/plans/%s", PNDM_TEST_DATA, file);
        pndm_npy a;
        if (!load_npy(path, &a, 1)) {
            CHECK_MSG(0, "%s", path);
            continue;
        }
        const int T = cfg.num_train_timesteps;
        CHECK(a.dtype == PNDM_NPY_I64 && a.ndim == 2 && a.shape[0] == T && a.shape[1] == 3);
        const int64_t *row = a.data;
        int bad_ok = 0, bad_calls = 0, bad_hash = 0, bad_code = 0;
        for (int N = 1; N <= T && a.count == (size_t)T * 3; N++, row += 3) {
            pndm_sampler *s = NULL;
            pndm_error err;
            pndm_status st = pndm_sampler_create_pndm(&cfg, N, &s, &err);
            int ok = st == PNDM_OK;
            if (ok != (int)row[0]) {
                if (bad_ok < 3)
                    fprintf(stderr, "%s N=%d: create %s, diffusers %s (%s)\n", file, N, ok ? "ok" : "refused",
                            row[0] ? "ok" : "fails", ok ? "" : err.msg);
                bad_ok++;
            }
            if (!ok && st != PNDM_ERR_USAGE) bad_code++;
            counts++;
            if (!ok || !row[0]) {
                pndm_sampler_free(s);
                continue;
            }
            accepted++;
            int calls = pndm_sampler_num_calls(s);
            bad_calls += calls != row[1];
            uint64_t h = UINT64_C(1469598103934665603);
            for (int i = 0; i < calls; i++) {
                int64_t ti = -7, pi = -7;
                CHECK(sched_pndm_call_indices(s, i, &ti, &pi));
                h = fnv_mix(fnv_mix(fnv_mix(h, pndm_sampler_timestep(s, i)), ti), pi);
            }
            if ((int64_t)h != row[2]) {
                if (bad_hash < 3) fprintf(stderr, "%s N=%d: timestep plan differs from diffusers\n", file, N);
                bad_hash++;
            }
            pndm_sampler_free(s);
        }
        CHECK_MSG(bad_ok == 0, "%s: %d step counts accepted/refused unlike diffusers", file, bad_ok);
        CHECK_MSG(bad_calls == 0, "%s: %d call counts differ", file, bad_calls);
        CHECK_MSG(bad_hash == 0, "%s: %d timestep plans differ", file, bad_hash);
        CHECK_MSG(bad_code == 0, "%s: %d refusals not PNDM_ERR_USAGE", file, bad_code);
        configs++;
        differ += (size_t)(bad_ok + bad_calls + bad_hash + bad_code);
        pndm_npy_free(&a);
    }
    printf("plans: %zu configs, %zu step counts (%zu run by diffusers, the rest refused), %zu differ from diffusers\n",
           configs, counts, accepted, differ);
    cJSON_Delete(root);
}

/* ---------------------------------------------------------------------------------------- */
/* Config parsing                                                                             */

static pndm_status parse(const char *json, pndm_scheduler_config *cfg, pndm_error *err) {
    return pndm_scheduler_config_parse(json, strlen(json), "sched.json", cfg, err);
}

/* `json` must be refused with PNDM_ERR_MODEL, a message naming the source and containing `want`. */
static void expect_refused(const char *json, const char *want) {
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    cfg.num_train_timesteps = 77; /* left untouched on failure */
    pndm_error err;
    memset(&err, 0, sizeof err);
    pndm_status st = parse(json, &cfg, &err);
    CHECK_MSG(st == PNDM_ERR_MODEL, "accepted or wrong code %d: %s", (int)st, json);
    CHECK(err.code == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "sched.json");
    CHECK_CONTAINS(err.msg, want);
    CHECK(cfg.num_train_timesteps == 77 && cfg.trained_betas == NULL);
}

static void test_config_parse(void) {
    pndm_scheduler_config cfg, d = pndm_scheduler_default_config();
    pndm_error err;
    CHECK(d.num_train_timesteps == 1000 && d.beta_start == 0.0001 && d.beta_end == 0.02);
    CHECK(d.beta_schedule == PNDM_BETA_LINEAR && !d.trained_betas && !d.skip_prk_steps && !d.set_alpha_to_one);
    CHECK(d.prediction_type == PNDM_PRED_EPSILON && d.timestep_spacing == PNDM_SPACING_LEADING && d.steps_offset == 0);

    /* the golden cases' configs */
    struct {
        const char *name;
        int skip, one, offset;
        pndm_beta_schedule bs;
        pndm_prediction_type pt;
        pndm_spacing sp;
        double b0, b1;
    } want[] = {
        {"alpha_one_offset1", 0, 1, 1, PNDM_BETA_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_LEADING, 0.0001, 0.02},
        {"default", 0, 0, 0, PNDM_BETA_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_LEADING, 0.0001, 0.02},
        {"linspace", 0, 0, 0, PNDM_BETA_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_LINSPACE, 0.0001, 0.02},
        {"scaled_linear", 0, 0, 0, PNDM_BETA_SCALED_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_LEADING, 0.00085, 0.012},
        {"sd_v1", 1, 0, 1, PNDM_BETA_SCALED_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_LEADING, 0.00085, 0.012},
        {"skip_prk", 1, 0, 0, PNDM_BETA_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_LEADING, 0.0001, 0.02},
        {"squaredcos", 0, 0, 0, PNDM_BETA_SQUAREDCOS_CAP_V2, PNDM_PRED_EPSILON, PNDM_SPACING_LEADING, 0.0001, 0.02},
        {"trailing", 0, 0, 0, PNDM_BETA_LINEAR, PNDM_PRED_EPSILON, PNDM_SPACING_TRAILING, 0.0001, 0.02},
        {"v_prediction", 0, 0, 0, PNDM_BETA_LINEAR, PNDM_PRED_V, PNDM_SPACING_LEADING, 0.0001, 0.02},
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/scheduler/%s/scheduler_config.json", PNDM_TEST_DATA, want[k].name);
        char *json = read_text(path);
        if (!json) {
            CHECK_MSG(0, "%s", path);
            continue;
        }
        pndm_status st = parse(json, &cfg, &err);
        free(json);
        CHECK_MSG(st == PNDM_OK, "%s: %s", want[k].name, err.msg);
        if (st) continue;
        CHECK(cfg.num_train_timesteps == 1000 && cfg.trained_betas == NULL);
        CHECK_MSG(cfg.skip_prk_steps == want[k].skip && cfg.set_alpha_to_one == want[k].one &&
                      cfg.steps_offset == want[k].offset && cfg.beta_schedule == want[k].bs &&
                      cfg.prediction_type == want[k].pt && cfg.timestep_spacing == want[k].sp &&
                      cfg.beta_start == want[k].b0 && cfg.beta_end == want[k].b1,
                  "%s: parsed values", want[k].name);
        pndm_scheduler_config_free(&cfg);
    }

    /* a DDPMScheduler config (google/ddpm-cifar10-32 style): unknown keys ignored */
    const char *ddpm = "{\"_class_name\": \"DDPMScheduler\", \"_diffusers_version\": \"0.1.1\", "
                       "\"beta_end\": 0.02, \"beta_schedule\": \"linear\", \"beta_start\": 0.0001, "
                       "\"clip_sample\": true, \"num_train_timesteps\": 1000, \"trained_betas\": null, "
                       "\"variance_type\": \"fixed_small\", \"prediction_type\": \"epsilon\", "
                       "\"thresholding\": false, \"dynamic_thresholding_ratio\": 0.995, "
                       "\"clip_sample_range\": 1.0, \"sample_max_value\": 1.0, \"rescale_betas_zero_snr\": false, "
                       "\"variance\": [1, {\"x\": null}]}";
    CHECK(parse(ddpm, &cfg, &err) == PNDM_OK);
    CHECK(cfg.num_train_timesteps == 1000 && cfg.beta_schedule == PNDM_BETA_LINEAR && !cfg.skip_prk_steps);
    pndm_scheduler_config_free(&cfg);

    /* empty object = defaults; whitespace around; length honoured (no NUL needed) */
    CHECK(parse(" \n{}\n ", &cfg, &err) == PNDM_OK);
    CHECK(cfg.num_train_timesteps == 1000 && cfg.beta_end == 0.02 && cfg.timestep_spacing == PNDM_SPACING_LEADING);
    const char buf[] = "{\"steps_offset\": 1}garbage";
    CHECK(pndm_scheduler_config_parse(buf, 19, "x", &cfg, &err) == PNDM_OK && cfg.steps_offset == 1);

    /* trained_betas: rounded to float, override beta_schedule */
    CHECK(parse("{\"num_train_timesteps\": 4, \"trained_betas\": [0.1, 0.2, 0.30000001, 0.5]}", &cfg, &err) == PNDM_OK);
    CHECK(cfg.num_train_timesteps == 4 && cfg.trained_betas && cfg.trained_betas[2] == (float)0.30000001 &&
          cfg.trained_betas[3] == 0.5f);
    char desc[512];
    pndm_scheduler_config_describe(&cfg, desc, sizeof desc);
    CHECK_CONTAINS(desc, "trained_betas=4 values");
    pndm_sampler *s = NULL;
    CHECK(pndm_sampler_create_pndm(&cfg, 4, &s, &err) == PNDM_OK);
    if (s) {
        CHECK(sampler_betas(s)[0] == 0.1f && sampler_betas(s)[3] == 0.5f);
        CHECK(sampler_alphas_cumprod(s)[1] == (float)((double)0.9f * (double)0.8f));
        CHECK(pndm_sampler_num_calls(s) == 13);
    }
    pndm_sampler_free(s);
    pndm_scheduler_config_free(&cfg);
    pndm_scheduler_config_free(&cfg); /* idempotent */

    /* every option */
    CHECK(parse("{\"num_train_timesteps\": 500, \"beta_start\": 0.001, \"beta_end\": 0.01, "
                "\"beta_schedule\": \"squaredcos_cap_v2\", \"skip_prk_steps\": true, \"set_alpha_to_one\": true, "
                "\"prediction_type\": \"v_prediction\", \"timestep_spacing\": \"trailing\", \"steps_offset\": 2}",
                &cfg, &err) == PNDM_OK);
    CHECK(cfg.num_train_timesteps == 500 && cfg.beta_start == 0.001 && cfg.beta_end == 0.01 &&
          cfg.beta_schedule == PNDM_BETA_SQUAREDCOS_CAP_V2 && cfg.skip_prk_steps && cfg.set_alpha_to_one &&
          cfg.prediction_type == PNDM_PRED_V && cfg.timestep_spacing == PNDM_SPACING_TRAILING && cfg.steps_offset == 2);
    pndm_scheduler_config_describe(&cfg, desc, sizeof desc);
    CHECK_CONTAINS(desc, "num_train_timesteps=500, beta_start=0.001, beta_end=0.01, beta_schedule=squaredcos_cap_v2");
    CHECK_CONTAINS(desc,
                   "skip_prk_steps=true, set_alpha_to_one=true, prediction_type=v_prediction, "
                   "timestep_spacing=trailing, steps_offset=2");
    pndm_scheduler_config_describe(&d, desc, sizeof desc);
    CHECK(strcmp(desc,
                 "PNDMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, "
                 "beta_schedule=linear, trained_betas=none, skip_prk_steps=false, set_alpha_to_one=false, "
                 "prediction_type=epsilon, timestep_spacing=leading, steps_offset=0)") == 0);
    char tiny[8];
    pndm_scheduler_config_describe(&d, tiny, sizeof tiny);
    CHECK(strcmp(tiny, "PNDMSch") == 0);

    /* refused: not JSON / not an object */
    expect_refused("", "not valid JSON");
    expect_refused("{\"beta_start\": 0.0001,}", "not valid JSON");
    expect_refused("{\"beta_start\": NaN}", "not valid JSON");
    expect_refused("{} {}", "not valid JSON");
    expect_refused("[1, 2]", "must be a JSON object");
    expect_refused("\"linear\"", "must be a JSON object");
    /* wrong types */
    expect_refused("{\"num_train_timesteps\": \"1000\"}", "\"num_train_timesteps\": expected an integer, got a string");
    expect_refused("{\"num_train_timesteps\": 1000.5}", "\"num_train_timesteps\": expected an integer");
    expect_refused("{\"beta_start\": \"0.0001\"}", "\"beta_start\": expected a number, got a string");
    expect_refused("{\"beta_end\": null}", "\"beta_end\": expected a number, got null");
    expect_refused("{\"beta_schedule\": 1}", "\"beta_schedule\": expected a string, got a number");
    expect_refused("{\"skip_prk_steps\": 1}", "\"skip_prk_steps\": expected true or false, got a number");
    expect_refused("{\"set_alpha_to_one\": \"true\"}", "\"set_alpha_to_one\": expected true or false, got a string");
    expect_refused("{\"prediction_type\": null}", "\"prediction_type\": expected a string, got null");
    expect_refused("{\"timestep_spacing\": [\"leading\"]}", "\"timestep_spacing\": expected a string, got an array");
    expect_refused("{\"steps_offset\": 0.5}", "\"steps_offset\": expected an integer");
    expect_refused("{\"steps_offset\": false}", "\"steps_offset\": expected an integer, got a boolean");
    expect_refused("{\"trained_betas\": 0.1}", "\"trained_betas\": expected null or an array of numbers, got a number");
    /* invalid values */
    expect_refused("{\"beta_schedule\": \"cosine\"}", "\"beta_schedule\": unsupported value \"cosine\"");
    expect_refused("{\"beta_schedule\": \"sigmoid\"}", "linear, scaled_linear, squaredcos_cap_v2");
    expect_refused("{\"prediction_type\": \"sample\"}", "\"prediction_type\": unsupported value \"sample\"");
    expect_refused("{\"timestep_spacing\": \"karras\"}", "\"timestep_spacing\": unsupported value \"karras\"");
    expect_refused("{\"num_train_timesteps\": 0}", "\"num_train_timesteps\": must be in 1..");
    expect_refused("{\"num_train_timesteps\": -5}", "\"num_train_timesteps\": must be in 1..");
    expect_refused("{\"num_train_timesteps\": 1e12}", "\"num_train_timesteps\": must be in 1..1000000");
    expect_refused("{\"steps_offset\": -1}", "\"steps_offset\": must be in 0..");
    expect_refused("{\"num_train_timesteps\": 10, \"steps_offset\": 10}",
                   "\"steps_offset\": must be in 0..num_train_timesteps-1 = 9");
    expect_refused("{\"beta_start\": 0}", "\"beta_start\": must be in (0, 1)");
    expect_refused("{\"beta_start\": -0.1}", "\"beta_start\": must be in (0, 1)");
    expect_refused("{\"beta_end\": 1.0}", "\"beta_end\": must be in (0, 1)");
    expect_refused("{\"beta_end\": 2}", "\"beta_end\": must be in (0, 1)");
    expect_refused("{\"beta_start\": 0.03, \"beta_end\": 0.02}", "\"beta_start\": 0.03 is larger than beta_end 0.02");
    expect_refused("{\"num_train_timesteps\": 3, \"trained_betas\": [0.1, 0.2]}",
                   "\"trained_betas\": has 2 values, num_train_timesteps is 3");
    expect_refused("{\"trained_betas\": [0.1, 0.2]}", "\"trained_betas\": has 2 values, num_train_timesteps is 1000");
    expect_refused("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, \"0.2\"]}",
                   "\"trained_betas\": element 1: expected a number, got a string");
    expect_refused("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, null]}",
                   "element 1: expected a number, got null");
    expect_refused("{\"num_train_timesteps\": 2, \"trained_betas\": [[0.1], 0.2]}",
                   "element 0: expected a number, got an array");
    expect_refused("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, 1.0]}",
                   "\"trained_betas\": element 1 must be in [0, 1)");
    expect_refused("{\"num_train_timesteps\": 2, \"trained_betas\": [-0.1, 0.5]}",
                   "\"trained_betas\": element 0 must be in [0, 1)");
    expect_refused("{\"beta_schedule\": \"linear\", \"beta_schedule\": \"scaled_linear\"}",
                   "\"beta_schedule\": appears more than once");

    /* NULL source: a generic name */
    CHECK(pndm_scheduler_config_parse("{\"beta_end\": 5}", 15, NULL, &cfg, &err) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "scheduler config: key \"beta_end\"");
    CHECK(pndm_scheduler_config_parse("{}", 2, "x", &cfg, NULL) == PNDM_OK); /* err may be NULL */
    CHECK(pndm_scheduler_config_parse("{", 1, "x", &cfg, NULL) == PNDM_ERR_MODEL);
}

/* ---------------------------------------------------------------------------------------- */
/* Sampler creation limits and API misuse                                                     */

static void test_sampler_api(void) {
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    pndm_sampler *s = (pndm_sampler *)&cfg; /* must be reset to NULL on failure */
    pndm_error err;
    CHECK(pndm_sampler_create_pndm(&cfg, 0, &s, &err) == PNDM_ERR_USAGE && s == NULL);
    CHECK_CONTAINS(err.msg, "steps must be in 1..1000");
    CHECK(pndm_sampler_create_pndm(&cfg, 1001, &s, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_sampler_create_pndm(&cfg, -3, &s, &err) == PNDM_ERR_USAGE);
    /* PRK needs >= 4 steps (diffusers' set_timesteps fails below that) */
    for (int n = 1; n <= 3; n++) {
        CHECK(pndm_sampler_create_pndm(&cfg, n, &s, &err) == PNDM_ERR_USAGE);
        CHECK_CONTAINS(err.msg, "steps must be >= 4");
    }
    CHECK(pndm_sampler_create_pndm(&cfg, 4, &s, &err) == PNDM_OK);
    CHECK(pndm_sampler_num_calls(s) == 13);
    static const int64_t want4[] = {750, 625, 625, 500, 500, 375, 375, 250, 250, 125, 125, 0, 0};
    for (int i = 0; i < 13 && s; i++) CHECK(pndm_sampler_timestep(s, i) == want4[i]);
    pndm_sampler_free(s);
    CHECK(pndm_sampler_create_pndm(&cfg, 1000, &s, &err) == PNDM_OK && pndm_sampler_num_calls(s) == 1009);
    pndm_sampler_free(s);
    /* skip_prk_steps: 1 step is one call (diffusers: plms_timesteps = [t0]), then steps + 1 */
    cfg.skip_prk_steps = 1;
    CHECK(pndm_sampler_create_pndm(&cfg, 1, &s, &err) == PNDM_OK);
    CHECK(pndm_sampler_num_calls(s) == 1 && pndm_sampler_timestep(s, 0) == 0);
    pndm_sampler_free(s);
    CHECK(pndm_sampler_create_pndm(&cfg, 2, &s, &err) == PNDM_OK);
    CHECK(pndm_sampler_num_calls(s) == 3 && pndm_sampler_timestep(s, 0) == 500 && pndm_sampler_timestep(s, 1) == 0 &&
          pndm_sampler_timestep(s, 2) == 0);
    pndm_sampler_free(s);
    /* steps_offset pushing a timestep past T-1: diffusers raises an IndexError */
    cfg.steps_offset = 1;
    CHECK(pndm_sampler_create_pndm(&cfg, 1000, &s, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "timestep 1000 is outside 0..999");
    /* trailing spacing quirk: 61 steps give 62 timesteps ending in -1 in diffusers */
    cfg.steps_offset = 0;
    cfg.timestep_spacing = PNDM_SPACING_TRAILING;
    CHECK(pndm_sampler_create_pndm(&cfg, 61, &s, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "\"trailing\"");
    CHECK(pndm_sampler_create_pndm(&cfg, 60, &s, &err) == PNDM_OK);
    pndm_sampler_free(s);
    /* an invalid struct is refused by create too */
    cfg = pndm_scheduler_default_config();
    cfg.beta_end = 1.5;
    CHECK(pndm_sampler_create_pndm(&cfg, 10, &s, &err) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "beta_end");
    cfg = pndm_scheduler_default_config();
    cfg.beta_schedule = (pndm_beta_schedule)7;
    CHECK(pndm_sampler_create_pndm(&cfg, 10, &s, &err) == PNDM_ERR_MODEL);
    CHECK(pndm_sampler_create_pndm(NULL, 10, &s, &err) == PNDM_ERR_USAGE);
    /* a schedule whose alphas_cumprod underflows to 0 divides by zero: refused */
    cfg = pndm_scheduler_default_config();
    cfg.beta_start = 0.5;
    cfg.beta_end = 0.9;
    CHECK(pndm_sampler_create_pndm(&cfg, 10, &s, &err) == PNDM_ERR_MODEL);
    CHECK_CONTAINS(err.msg, "divides by zero");
    /* trained betas of 0 with set_alpha_to_one: alphas_cumprod 1 -> 1 is 0/0 in diffusers */
    cfg = pndm_scheduler_default_config();
    float zeros[4] = {0, 0, 0.1f, 0.2f};
    cfg.num_train_timesteps = 4;
    cfg.trained_betas = zeros;
    cfg.set_alpha_to_one = 1;
    cfg.skip_prk_steps = 1;
    CHECK(pndm_sampler_create_pndm(&cfg, 4, &s, &err) == PNDM_ERR_MODEL);

    /* calls in order, same size, reset restarts */
    cfg = pndm_scheduler_default_config();
    CHECK(pndm_sampler_create_pndm(&cfg, 5, &s, &err) == PNDM_OK);
    if (!s) return;
    const int calls = pndm_sampler_num_calls(s);
    CHECK(calls == 14);
    float x[6], x2[6], mo[6];
    const float x_init[6] = {0.5f, -1.25f, 2.0f, 0.0f, -0.75f, 1.5f};
    CHECK(pndm_sampler_step(s, 1, mo, x, 6, &err) == PNDM_ERR_USAGE);
    CHECK_CONTAINS(err.msg, "out of order");
    CHECK(pndm_sampler_step(s, 0, mo, x, 0, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_sampler_step(s, 0, NULL, x, 6, &err) == PNDM_ERR_USAGE);
    memcpy(x, x_init, sizeof x);
    for (int i = 0; i < calls; i++) {
        standin(x, 6, pndm_sampler_timestep(s, i), mo);
        CHECK(pndm_sampler_step(s, i, mo, x, 6, &err) == PNDM_OK);
        if (i == 2) {
            CHECK(pndm_sampler_step(s, 3, mo, x, 5, &err) == PNDM_ERR_USAGE);
            CHECK_CONTAINS(err.msg, "differs");
            CHECK(pndm_sampler_step(s, 2, mo, x, 6, &err) == PNDM_ERR_USAGE); /* repeated */
        }
    }
    CHECK(pndm_sampler_step(s, calls, mo, x, 6, &err) == PNDM_ERR_USAGE);
    CHECK(pndm_sampler_step(s, 0, mo, x, 6, &err) == PNDM_ERR_USAGE);
    /* a reset run (even after a run of another size) gives the same bits */
    pndm_sampler_reset(s);
    float big[40] = {0};
    for (int i = 0; i < 3; i++) CHECK(pndm_sampler_step(s, i, big, big, 40, &err) == PNDM_OK);
    pndm_sampler_reset(s);
    memcpy(x2, x_init, sizeof x2);
    for (int i = 0; i < calls; i++) {
        standin(x2, 6, pndm_sampler_timestep(s, i), mo);
        CHECK(pndm_sampler_step(s, i, mo, x2, 6, &err) == PNDM_OK);
    }
    CHECK(memcmp(x, x2, sizeof x) == 0);
    for (int i = 0; i < 6; i++) CHECK(isfinite(x[i]) && fabsf(x[i]) < 10);
    pndm_sampler_free(s);
    pndm_sampler_free(NULL);
}

int main(void) {
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) check_case(CASES[c].name, CASES[c].runs);
    check_beta_tables();
    check_plans();
    test_config_parse();
    test_sampler_api();
    return TEST_SUMMARY();
}
