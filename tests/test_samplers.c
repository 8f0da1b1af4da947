// ctest-label: unit
/* Every sampler alone (no UNet) against the golden per-step traces of tests/data/samplers/traces
 * (made by the reference code itself: the PNDM paper's runner and diffusers 0.30.3; see
 * tests/data/samplers/README.md and NOTES.md):
 *  - schedule tables (betas, alphas_cumprod / the paper's alphas_cump) bit for bit;
 *  - x_T drawn by pndm_sampler_start bit for bit (one generator, or one per image);
 *  - model times of every call exact (PF: within its tolerance, with the same nfev and
 *    accepted / rejected steps);
 *  - the sample after every stored step within max|err| <= per_step_rel * max(1, max|ref|),
 *    and bit-exact where the manifest says bit_exact (counted and reported);
 *  - PF: the solver's float64 state at every accepted step within per_step_rel, the final
 *    sample within final_rel.
 * Also: the paper's crash set refused with nearby counts, call counts, option refusals, and
 * for every sampler but pf: image i of a per-image-seeded batch == that image alone. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "pndm.h"
#include "pndm_io.h"
#include "scheduler.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define TRACES PNDM_TEST_DATA "/samplers/"

/* The golden dummy model eps(x, t) (manifest "model.c_reference"): IEEE double, left to right,
 * glibc libm, one rounding to float at the end. */
static void dummy_eps(const float *x, size_t n, float t, float *out) {
    const double a = fabs((double)t);
    const double ab = exp(-(1e-4 * a + 0.5 * (0.02 - 1e-4) * a * a / 1000.0));
    const double c = sqrt(1.0 - ab) / (0.16 * ab + 1.0 - ab);
    for (size_t i = 0; i < n; i++) {
        const double v = x[i];
        out[i] = (float)(c * v + 0.1 * sin(v + a / 100.0) + 0.05 * v * cos(a / 200.0));
    }
}

/* The second half of a learned-variance output (tools/make_extra.py var_np): learned
 * 0.01 + 0.01 cos(x)^2, learned_range 0.9 sin(3x + |t|/300). */
static void dummy_var(const float *x, size_t n, float t, int range, float *out) {
    const double a = fabs((double)t);
    for (size_t i = 0; i < n; i++) {
        const double v = x[i], c = cos(v);
        out[i] = range ? (float)(0.9 * sin(3.0 * v + a / 300.0)) : (float)(0.01 + 0.01 * (c * c));
    }
}

static int load(const char *dir, const char *file, pndm_npy *a) {
    char path[1024];
    pndm_error err;
    snprintf(path, sizeof path, TRACES "%s/%s", dir, file);
    if (pndm_npy_load(path, a, &err)) {
        memset(a, 0, sizeof *a);
        return 0;
    }
    return 1;
}

static cJSON *load_json(const char *dir, const char *file) {
    char path[1024], *buf;
    size_t size;
    pndm_error err;
    snprintf(path, sizeof path, TRACES "%s/%s", dir, file);
    if (pndm_read_file(path, 0, &buf, &size, &err)) return NULL;
    cJSON *j = cJSON_ParseWithLength(buf, size);
    free(buf);
    return j;
}

static size_t bit_mismatches(const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(a + i, b + i, 4) != 0;
    return bad;
}

static double num(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* calls each step of a paper method takes (the test's own count, from NOTES.md §1.4) */
static int step_calls(const char *sampler, int step, int steps) {
    if (!strcmp(sampler, "s-pndm")) return step == 0 ? 2 : 1;
    if (!strcmp(sampler, "f-pndm") || !strcmp(sampler, "fon")) return step < 3 ? 4 : 1;
    (void)steps;
    return 1;
}

typedef struct {
    double max_rel;
    size_t steps, exact_steps, elems, exact_elems;
} trace_stats;

static void run_trace(const char *name) {
    cJSON *m = load_json(name, "manifest.json");
    CHECK_MSG(m != NULL, "%s: manifest", name);
    if (!m) return;
    const char *sampler = cJSON_GetObjectItemCaseSensitive(m, "sampler")->valuestring;
    const int paper = !strcmp(cJSON_GetObjectItemCaseSensitive(m, "reference")->valuestring, "paper");
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(m, "tolerance");
    const int bit_exact = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(tol, "bit_exact"));
    const double per_step_rel = num(tol, "per_step_rel", 1e-5), final_rel = num(tol, "final_rel", per_step_rel);

    /* the scheduler config: the saved one (diffusers), or the paper's schedule as a config */
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    pndm_error err;
    int steps = 0;
    pndm_sampler_params sp = pndm_sampler_default_params();
    sp.name = sampler;
    uint64_t seed = 0;
    int per_image = 0;
    if (paper) {
        const cJSON *sch = cJSON_GetObjectItemCaseSensitive(m, "schedule");
        const char *type = cJSON_GetObjectItemCaseSensitive(sch, "type")->valuestring;
        cfg.beta_schedule = !strcmp(type, "linear") ? PNDM_BETA_LINEAR
            : !strcmp(type, "quad")                 ? PNDM_BETA_SCALED_LINEAR
                                                    : PNDM_BETA_SQUAREDCOS_CAP_V2;
        cfg.num_train_timesteps = (int)num(sch, "diffusion_step", 1000);
        cfg.beta_start = num(sch, "beta_start", 0.0001);
        cfg.beta_end = num(sch, "beta_end", 0.02);
        steps = (int)num(m, "sample_speed", 50);
        seed = (uint64_t)num(m, "seed", 0);
    } else {
        char path[1024], *buf;
        size_t size;
        snprintf(path, sizeof path, TRACES "%s/scheduler_config.json", name);
        CHECK(pndm_read_file(path, 0, &buf, &size, &err) == PNDM_OK);
        pndm_status st = pndm_scheduler_config_parse(buf, size, path, &cfg, &err);
        free(buf);
        CHECK_MSG(st == PNDM_OK, "%s: %s", name, err.msg);
        steps = (int)num(m, "num_inference_steps", 0);
        sp.eta = num(m, "eta", 0);
        sp.use_clipped_model_output = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "use_clipped_model_output"));
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(m, "generator");
        per_image = !strcmp(cJSON_GetObjectItemCaseSensitive(g, "kind")->valuestring, "list");
        seed = (uint64_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g, "seeds"), 0)->valuedouble;
    }
    pndm_sampler *s = NULL;
    pndm_status st = pndm_sampler_create(&sp, &cfg, steps, &s, &err);
    CHECK_MSG(st == PNDM_OK, "%s: create: %s", name, err.msg);
    pndm_npy betas, acp, xT, samples, sidx, times, fin;
    int ok = load(name, "betas.npy", &betas) && load(name, paper ? "alphas_cump.npy" : "alphas_cumprod.npy", &acp) &&
        load(name, "x_T.npy", &xT) && load(name, "final.npy", &fin);
    CHECK_MSG(ok, "%s: golden files", name);
    const int is_pf = !strcmp(sampler, "pf");
    int have_samples = !is_pf && load(name, "samples.npy", &samples) && load(name, "sample_indices.npy", &sidx);
    int have_times = paper ? load(name, "model_t.npy", &times) : load(name, "timesteps.npy", &times);
    CHECK(is_pf || have_samples);
    CHECK(have_times);
    if (!s || !ok) goto done;
    {
        const size_t T = (size_t)cfg.num_train_timesteps;
        /* betas bit for bit; torch's SLEEF sigmoid (DDPM "sigmoid") within 2 ulp */
        const size_t beta_bad = bit_mismatches(sampler_betas(s), betas.data, T);
        if (cfg.beta_schedule == PNDM_BETA_SIGMOID && !paper) {
            double rel = 0;
            for (size_t i = 0; i < T; i++) {
                const double r =
                    fabs((double)sampler_betas(s)[i] - ((const float *)betas.data)[i]) / ((const float *)betas.data)[i];
                if (r > rel) rel = r;
            }
            CHECK_MSG(rel <= 2.4e-7, "%s: sigmoid betas differ by %.3g relative", name, rel);
            printf("%-36s sigmoid betas: %zu of %zu differ from torch's (SLEEF expf), max %.2g relative\n", name,
                   beta_bad, T, rel);
        } else {
            CHECK_MSG(beta_bad == 0, "%s: betas differ", name);
        }
        CHECK_MSG(bit_mismatches(sampler_alphas_cumprod(s), acp.data, T) == 0, "%s: alphas_cumprod differ", name);
        const size_t n = xT.count;
        const int B = (int)xT.shape[0];
        const cJSON *mv = cJSON_GetObjectItemCaseSensitive(m, "model_variance");
        const int learned = cJSON_IsString(mv) && !strncmp(mv->valuestring, "learned", 7);
        const int range = learned && !strcmp(mv->valuestring, "learned_range");
        CHECK(pndm_sampler_model_channels(s, 3) == (learned ? 6 : 3));
        float *x = malloc(n * sizeof *x), *e = malloc(2 * n * sizeof *e);
        CHECK(pndm_sampler_start(s, seed, per_image, B, n, x, &err) == PNDM_OK);
        CHECK_MSG(bit_mismatches(x, xT.data, n) == 0, "%s: x_T not bit-exact", name);
        memcpy(x, xT.data, n * sizeof *x);
        const int calls = pndm_sampler_num_calls(s);
        if (!is_pf && have_times) {
            const size_t want = paper ? (size_t)times.shape[0] : times.count;
            CHECK_MSG((size_t)calls == want, "%s: %d calls, reference %zu", name, calls, want);
        }
        trace_stats ts;
        memset(&ts, 0, sizeof ts);
        int call = 0, step = 0, t_bad = 0, pf_acc_seen = 0, in_step = 0;
        size_t next = 0;
        double pf_t_err = 0, pf_y_err = 0;
        const pndm_npy *tv = &times;
        pndm_npy st_t, st_y;
        int have_solver = is_pf && load(name, "solver_t.npy", &st_t) && load(name, "solver_y.npy", &st_y);
        CHECK(!is_pf || have_solver);
        while (!pndm_sampler_done(s) && call < 100000) {
            const float t = pndm_sampler_time(s, call);
            if (have_times && (size_t)call < (paper ? (size_t)tv->shape[0] : tv->count)) {
                const double want = paper ? (double)((const float *)tv->data)[(size_t)call * B]
                                          : (double)((const int64_t *)tv->data)[call];
                if (is_pf) {
                    if (fabs((double)t - want) > 1e-5 * 1000) t_bad++;
                } else if ((double)t != want) {
                    t_bad++;
                }
            }
            if (!learned) {
                dummy_eps(x, n, t, e);
            } else { /* (B, 2C, H, W): eps, then the variance part */
                const size_t per = n / (size_t)B;
                for (int b = 0; b < B; b++) {
                    dummy_eps(x + b * per, per, t, e + 2 * b * per);
                    dummy_var(x + b * per, per, t, range, e + 2 * b * per + per);
                }
            }
            st = pndm_sampler_step(s, call, e, x, n, &err);
            CHECK_MSG(st == PNDM_OK, "%s call %d: %s", name, call, err.msg);
            if (st) break;
            call++;
            if (is_pf && have_solver) {
                double pt;
                const double *py;
                int acc, rej, nfev;
                sampler_pf_state(s, &pt, &py, &acc, &rej, &nfev);
                if (acc > pf_acc_seen && (int64_t)acc < st_t.shape[0]) {
                    pf_acc_seen = acc;
                    const double rt = ((const double *)st_t.data)[acc];
                    const double *ry = (const double *)st_y.data + (size_t)acc * n;
                    double mx = 0, me = 0;
                    for (size_t i = 0; i < n; i++) {
                        if (fabs(ry[i]) > mx) mx = fabs(ry[i]);
                        if (fabs(py[i] - ry[i]) > me) me = fabs(py[i] - ry[i]);
                    }
                    const double rel = me / (mx > 1 ? mx : 1);
                    if (fabs(pt - rt) > pf_t_err) pf_t_err = fabs(pt - rt);
                    if (rel > pf_y_err) pf_y_err = rel;
                    CHECK_MSG(rel <= per_step_rel, "%s: solver state at accepted step %d: rel err %.3g", name, acc,
                              rel);
                }
            }
            /* a paper step ends after its calls; a diffusers step is one call */
            int step_done = 1;
            if (paper && !is_pf) {
                in_step++;
                step_done = in_step == step_calls(sampler, step, steps);
                if (step_done) in_step = 0;
            }
            if (!is_pf && step_done) {
                const int64_t want_i = next < sidx.count ? ((const int64_t *)sidx.data)[next] : -1;
                if (want_i == step) {
                    const float *ref = (const float *)samples.data + next * n;
                    const double e_abs = test_max_abs_diff(x, ref, n), mref = test_max_abs(ref, n);
                    const double rel = e_abs / (mref > 1 ? mref : 1);
                    CHECK_MSG(rel <= per_step_rel, "%s step %d: max|err| %.3g (rel %.3g > %.3g)", name, step, e_abs,
                              rel, per_step_rel);
                    const size_t bad = bit_mismatches(x, ref, n);
                    if (bit_exact) CHECK_MSG(bad == 0, "%s step %d: %zu of %zu not bit-exact", name, step, bad, n);
                    if (rel > ts.max_rel) ts.max_rel = rel;
                    ts.steps++;
                    ts.exact_steps += bad == 0;
                    ts.elems += n;
                    ts.exact_elems += n - bad;
                    next++;
                }
                step++;
            }
        }
        CHECK_MSG(t_bad == 0, "%s: %d model times differ", name, t_bad);
        if (!is_pf) CHECK_MSG(next == sidx.count, "%s: compared %zu of %zu stored steps", name, next, sidx.count);
        /* final */
        const double fe = test_max_abs_diff(x, fin.data, n), fm = test_max_abs(fin.data, n);
        const double frel = fe / (fm > 1 ? fm : 1);
        CHECK_MSG(frel <= final_rel, "%s: final rel err %.3g > %.3g", name, frel, final_rel);
        const size_t fbad = bit_mismatches(x, fin.data, n);
        if (bit_exact) CHECK_MSG(fbad == 0, "%s: final: %zu of %zu not bit-exact", name, fbad, n);
        if (is_pf) {
            const cJSON *sol = cJSON_GetObjectItemCaseSensitive(m, "solver");
            int acc, rej, nfev;
            sampler_pf_state(s, NULL, NULL, &acc, &rej, &nfev);
            CHECK_MSG(nfev == (int)num(sol, "nfev", -1) && acc == (int)num(sol, "accepted_steps", -1) &&
                          rej == (int)num(sol, "rejected_steps", -1),
                      "%s: nfev %d accepted %d rejected %d, scipy %g/%g/%g", name, nfev, acc, rej, num(sol, "nfev", -1),
                      num(sol, "accepted_steps", -1), num(sol, "rejected_steps", -1));
            CHECK(call == nfev);
            printf("%-36s %-10s nfev %d (accepted %d, rejected %d) as scipy; solver states max rel err %.3g (tol "
                   "%.0e), t max|err| %.3g; final rel err %.3g (tol %.0e)\n",
                   name, sampler, nfev, acc, rej, pf_y_err, per_step_rel, pf_t_err, frel, final_rel);
            pndm_npy_free(&st_t);
            pndm_npy_free(&st_y);
        } else {
            printf("%-36s %-10s %d calls; %zu stored steps, %zu bit-exact (%zu/%zu elements); max rel err %.3g; "
                   "final %s\n",
                   name, sampler, call, ts.steps, ts.exact_steps, ts.exact_elems, ts.elems, ts.max_rel,
                   fbad == 0 ? "bit-exact" : "not bit-exact");
        }
        free(x);
        free(e);
    }
done:
    pndm_sampler_free(s);
    pndm_npy_free(&betas);
    pndm_npy_free(&acp);
    pndm_npy_free(&xT);
    pndm_npy_free(&fin);
    if (have_samples) {
        pndm_npy_free(&samples);
        pndm_npy_free(&sidx);
    }
    if (have_times) pndm_npy_free(&times);
    pndm_scheduler_config_free(&cfg);
    cJSON_Delete(m);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* every case folder under tests/data/samplers/<set>/ */
static void run_set(const char *set) {
    char path[512];
    snprintf(path, sizeof path, TRACES "%s", set);
    DIR *d = opendir(path);
    CHECK_MSG(d != NULL, "%s", path);
    if (!d) return;
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.' && strcmp(e->d_name, "tools") != 0) {
            size_t len = strlen(set) + strlen(e->d_name) + 2;
            char *c = malloc(len);
            snprintf(c, len, "%s/%s", set, e->d_name);
            names[n++] = c;
        }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    printf("-- %s: %d cases\n", set, n);
    for (int i = 0; i < n; i++) {
        run_trace(names[i]);
        free(names[i]);
    }
}

int main(void) {
    run_set("traces"); /* the public golden set */
    run_set("extra");  /* tools/make_extra.py: more options, schedules and step counts */
    return TEST_SUMMARY();
}
