// ctest-label: e2e
/* Whole runs of every sampler (tests/data/samplers, see README.md there):
 *  - every public pipeline case through `pndm-gen --sampler ...` (the manifest's own `cli`
 *    arguments) on the tiny UNet: initial noise bit-exact, the model times of every call exact,
 *    final latents within final_latents_rel * max|ref|, images within images_abs;
 *  - for every sampler but pf: with per-image seeds, image i of a batch equals a run of that
 *    image alone, and the bytes do not depend on the thread count;
 *  - pf: batch-coupled (documented), but deterministic: the same bytes on a rerun and for any
 *    thread count. */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"
#include "npy_util.h"
#include "pndm.h"
#include "pndm_io.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define SDATA PNDM_TEST_DATA "/samplers/"
#define TINY SDATA "models/unet_tiny"

static cJSON *load_json(const char *path) {
    char *buf;
    size_t size;
    pndm_error err;
    if (pndm_read_file(path, 0, &buf, &size, &err)) return NULL;
    cJSON *j = cJSON_ParseWithLength(buf, size);
    free(buf);
    return j;
}

/* Run argv (argv[0] = program path) with stdout to `out` (NULL: /dev/null); the exit status. */
static int run(char *const argv[], const char *out) {
    fflush(stdout); /* the child must not write our buffered lines again */
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (!freopen(out ? out : "/dev/null", "w", stdout)) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static char g_tmp[256];

static void case_through_cli(const char *set, const char *name) {
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, SDATA "%s/%s", set, name);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    cJSON *m = load_json(path);
    CHECK_MSG(m != NULL, "%s: manifest", name);
    if (!m) return;
    const cJSON *cli = cJSON_GetObjectItemCaseSensitive(m, "cli");
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(m, "tolerance");
    const double lat_rel = cJSON_GetObjectItemCaseSensitive(tol, "final_latents_rel")->valuedouble;
    const double img_abs = cJSON_GetObjectItemCaseSensitive(tol, "images_abs")->valuedouble;
    char *argv[64];
    char sched[1024], out[512], lat[512], noise[512], bin[512];
    int k = 0;
    snprintf(bin, sizeof bin, "%s/pndm-gen", PNDM_BIN_DIR);
    argv[k++] = bin;
    argv[k++] = "-q";
    argv[k++] = "--json";
    argv[k++] = "-t";
    argv[k++] = "2";
    const cJSON *mdl = cJSON_GetObjectItemCaseSensitive(m, "model");
    char model[512];
    snprintf(model, sizeof model, SDATA "models/%s", cJSON_IsString(mdl) ? mdl->valuestring : "unet_tiny");
    argv[k++] = "-m";
    argv[k++] = model;
    snprintf(sched, sizeof sched, "%s/scheduler_config.json", dir);
    const cJSON *a;
    cJSON_ArrayForEach(a, cli) {
        if (k >= 50) break;
        argv[k++] = !strcmp(a->valuestring, "scheduler_config.json") ? sched : a->valuestring;
    }
    snprintf(out, sizeof out, "%s/%s_images.npy", g_tmp, name);
    snprintf(lat, sizeof lat, "%s/%s_latents.npy", g_tmp, name);
    snprintf(noise, sizeof noise, "%s/%s_noise.npy", g_tmp, name);
    argv[k++] = "-o";
    argv[k++] = out;
    argv[k++] = "--latents";
    argv[k++] = lat;
    argv[k++] = "--save-noise";
    argv[k++] = noise;
    argv[k] = NULL;
    char json_path[600];
    snprintf(json_path, sizeof json_path, "%s/%s.json", g_tmp, name);
    const int rc = run(argv, json_path);
    CHECK_MSG(rc == 0, "%s: pndm-gen exited %d", name, rc);
    cJSON *summary = load_json(json_path);
    const cJSON *calls_made = cJSON_GetObjectItemCaseSensitive(summary, "unet_calls");
    const int is_pf = !strcmp(cJSON_GetObjectItemCaseSensitive(m, "sampler")->valuestring, "pf");
    const cJSON *solver = cJSON_GetObjectItemCaseSensitive(m, "solver");
    const cJSON *nfev = cJSON_GetObjectItemCaseSensitive(solver, "nfev");
    if (is_pf && cJSON_IsNumber(nfev))
        CHECK_MSG(cJSON_IsNumber(calls_made) && calls_made->valueint == nfev->valueint,
                  "%s: pf made %d model calls, scipy %d", name, calls_made ? calls_made->valueint : -1, nfev->valueint);

    size_t n = 0, rn = 0;
    float *got = test_npy_f32(noise, &n, NULL), *ref;
    snprintf(path, sizeof path, "%s/init_noise.npy", dir);
    ref = test_npy_f32(path, &rn, NULL);
    const int noise_exact = got && ref && n == rn && memcmp(got, ref, n * 4) == 0;
    CHECK_MSG(noise_exact, "%s: initial noise not bit-exact", name);
    free(got);
    free(ref);
    got = test_npy_f32(lat, &n, NULL);
    snprintf(path, sizeof path, "%s/final_latents.npy", dir);
    ref = test_npy_f32(path, &rn, NULL);
    double le = INFINITY, lm = 0, ie = INFINITY;
    if (got && ref && n == rn) {
        le = test_max_abs_diff(got, ref, n);
        lm = test_max_abs(ref, n);
    }
    CHECK_MSG(le <= lat_rel * lm, "%s: latents max|err| %.3g > %.3g * %.3g", name, le, lat_rel, lm);
    free(got);
    free(ref);
    got = test_npy_f32(out, &n, NULL);
    snprintf(path, sizeof path, "%s/images.npy", dir);
    ref = test_npy_f32(path, &rn, NULL);
    if (got && ref && n == rn) ie = test_max_abs_diff(got, ref, n);
    CHECK_MSG(ie <= img_abs, "%s: images max|err| %.3g > %.3g", name, ie, img_abs);
    free(got);
    free(ref);

    /* the model times of every call, from the library with the same sampler and config */
    pndm_npy ts;
    pndm_error err;
    snprintf(path, sizeof path, "%s/timesteps.npy", dir);
    if (!is_pf && pndm_npy_load(path, &ts, &err) == PNDM_OK) {
        char *buf;
        size_t size;
        pndm_scheduler_config cfg;
        CHECK(pndm_read_file(sched, 0, &buf, &size, &err) == PNDM_OK);
        CHECK(pndm_scheduler_config_parse(buf, size, sched, &cfg, &err) == PNDM_OK);
        free(buf);
        pndm_sampler_params sp = pndm_sampler_default_params();
        sp.name = cJSON_GetObjectItemCaseSensitive(m, "sampler")->valuestring;
        pndm_sampler *s = NULL;
        const int steps = cJSON_GetObjectItemCaseSensitive(m, "steps")->valueint;
        const int B = cJSON_GetObjectItemCaseSensitive(m, "batch")->valueint;
        CHECK(pndm_sampler_create(&sp, &cfg, steps, &s, &err) == PNDM_OK);
        const int calls = pndm_sampler_num_calls(s);
        const int per_row = ts.dtype == PNDM_NPY_F32 ? B : 1; /* (calls, B) float32 or (calls,) int64 */
        CHECK_MSG(s && ts.count == (size_t)calls * per_row, "%s: %d calls, reference %zu", name, calls,
                  ts.count / per_row);
        int bad = 0;
        for (int i = 0; s && i < calls && (size_t)i * per_row < ts.count; i++) {
            const double want = ts.dtype == PNDM_NPY_F32 ? ((const float *)ts.data)[(size_t)i * B]
                                                         : (double)((const int64_t *)ts.data)[i];
            bad += (double)pndm_sampler_time(s, i) != want;
        }
        CHECK_MSG(bad == 0, "%s: %d model times differ", name, bad);
        pndm_sampler_free(s);
        pndm_scheduler_config_free(&cfg);
        pndm_npy_free(&ts);
    }
    printf("%-36s pndm-gen %-10s %4d calls, noise %s, latents max|err| %.3g = %.3g of max|ref| %.4g (tol %.0e), "
           "images max|err| %.3g (tol %.0e)\n",
           name, cJSON_GetObjectItemCaseSensitive(m, "sampler")->valuestring,
           cJSON_IsNumber(calls_made) ? calls_made->valueint : -1, noise_exact ? "bit-exact" : "DIFFERS", le,
           lm > 0 ? le / lm : 0, lm, lat_rel, ie, img_abs);
    cJSON_Delete(summary);
    cJSON_Delete(m);
}

/* ---- batch independence and thread counts -------------------------------------------------- */

/* the golden dummy model (any C, S) */
static pndm_status dummy(const float *x, int B, int C, int S, const float *t, float *out, void *user, pndm_error *err) {
    (void)user;
    (void)err;
    const size_t per = (size_t)C * S * S;
    for (int b = 0; b < B; b++) {
        const double a = fabs((double)t[b]);
        const double ab = exp(-(1e-4 * a + 0.5 * (0.02 - 1e-4) * a * a / 1000.0));
        const double c = sqrt(1.0 - ab) / (0.16 * ab + 1.0 - ab);
        for (size_t i = 0; i < per; i++) {
            const double v = x[b * per + i];
            out[b * per + i] = (float)(c * v + 0.1 * sin(v + a / 100.0) + 0.05 * v * cos(a / 200.0));
        }
    }
    return PNDM_OK;
}

typedef struct {
    const char *sampler;
    double eta;
    int steps;
    const char *cfg_json; /* NULL: PNDMScheduler defaults */
} sampler_case;

static const sampler_case k_cases[] = {
    {"pndm", 0, 6, NULL},
    {"ddim", 0, 8, NULL},
    {"ddim", 1.0, 8, "{\"_class_name\": \"DDIMScheduler\", \"thresholding\": true, \"sample_max_value\": 2.0}"},
    {"ddpm", 0, 12, "{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"fixed_large\"}"},
    {"ddpm", 0, 10, "{\"_class_name\": \"DDPMScheduler\", \"thresholding\": true, \"steps_offset\": 1}"},
    {"ddim-paper", 0, 10, NULL},
    {"s-pndm", 0, 10, NULL},
    {"f-pndm", 0, 8, NULL},
    {"fon", 0, 12, "{\"beta_schedule\": \"squaredcos_cap_v2\"}"},
};

static void batch_independence(void) {
    const int C = 3, S = 8, B = 3;
    const size_t per = (size_t)C * S * S, n = per * B;
    float *batch = malloc(n * 4), *one = malloc(per * 4);
    pndm_error err;
    for (size_t k = 0; k < sizeof k_cases / sizeof *k_cases; k++) {
        const sampler_case *c = &k_cases[k];
        pndm_scheduler_config cfg = pndm_scheduler_default_config();
        if (c->cfg_json) CHECK(pndm_scheduler_config_parse(c->cfg_json, strlen(c->cfg_json), "t", &cfg, &err) == 0);
        pndm_gen_params p = pndm_gen_default_params();
        p.sampler.name = c->sampler;
        p.sampler.eta = c->eta;
        p.steps = c->steps;
        p.batch = B;
        p.seed = 40;
        p.per_image_seeds = 1;
        CHECK_MSG(pndm_generate_custom(dummy, NULL, C, S, &cfg, &p, NULL, batch, &err) == PNDM_OK, "%s: %s", c->sampler,
                  err.msg);
        int same = 1;
        for (int i = 0; i < B; i++) {
            pndm_gen_params q = p;
            q.batch = 1;
            q.seed = 40 + (uint64_t)i;
            CHECK(pndm_generate_custom(dummy, NULL, C, S, &cfg, &q, NULL, one, &err) == PNDM_OK);
            same &= memcmp(one, batch + i * per, per * 4) == 0;
        }
        CHECK_MSG(same, "%s (%s): image i of the batch differs from image i alone", c->sampler,
                  c->cfg_json ? c->cfg_json : "defaults");
        printf("batch independence (per-image seeds): %-10s eta %g %-70s %s\n", c->sampler, c->eta,
               c->cfg_json ? c->cfg_json : "(PNDMScheduler defaults)", same ? "identical" : "DIFFERENT");
        pndm_scheduler_config_free(&cfg);
    }
    free(batch);
    free(one);
}

/* Every sampler on the tiny UNet: 1 and 2 threads give the same bytes; pf as well, and a rerun. */
static void threads_and_pf(void) {
    pndm_model *m = NULL;
    pndm_error err;
    if (pndm_model_load(TINY, &m, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    pndm_scheduler_config cfg = pndm_scheduler_default_config();
    static const struct {
        const char *name;
        double eta;
        int steps;
    } list[] = {{"pndm", 0, 5},   {"ddim", 1, 5},   {"ddpm", 0, 5}, {"ddim-paper", 0, 5},
                {"s-pndm", 0, 5}, {"f-pndm", 0, 5}, {"fon", 0, 5},  {"pf", 0, 2 /* tol 1e-5 */}};
    for (size_t k = 0; k < sizeof list / sizeof *list; k++) {
        pndm_gen_params p = pndm_gen_default_params();
        p.sampler.name = list[k].name;
        p.sampler.eta = list[k].eta;
        p.steps = list[k].steps;
        p.batch = 2;
        p.seed = 9;
        p.scheduler = &cfg;
        const size_t n = pndm_gen_latent_count(m, &p);
        float *a = malloc(n * 4), *b = malloc(n * 4);
        p.n_threads = 1;
        CHECK_MSG(pndm_generate(m, &p, NULL, a, &err) == PNDM_OK, "%s: %s", list[k].name, err.msg);
        p.n_threads = 2;
        CHECK(pndm_generate(m, &p, NULL, b, &err) == PNDM_OK);
        const int same = memcmp(a, b, n * 4) == 0;
        CHECK_MSG(same, "%s: 1 and 2 threads differ", list[k].name);
        int finite = 1;
        for (size_t i = 0; i < n; i++) finite &= isfinite(a[i]) != 0;
        CHECK_MSG(finite, "%s: non-finite latents", list[k].name);
        printf("threads 1 vs 2 on the tiny UNet: %-10s %s\n", list[k].name, same ? "identical" : "DIFFERENT");
        free(a);
        free(b);
    }
    pndm_model_free(m);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/pndm_test_sampler_pipeline_XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL);
    /* the public golden cases, then tools/make_extra_pipelines.py's (pf, fon, ddim-paper, other
     * schedules, T = 500, DDIM v_prediction / thresholding, DDPM fixed_small_log) */
    static const char *cases[] = {"ddim_eta1_n20_b2", "ddpm_n20_b2_list", "pndm_n10_b2", "paper_fpndm_n20_b2",
                                  "paper_spndm_n10_b2"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) case_through_cli("pipeline", cases[i]);
    static const char *extra[] = {"pf_n50_b2",
                                  "fon_cosine_n20_b2_list",
                                  "ddim_paper_quad_n25_b3",
                                  "fpndm_n12_b1",
                                  "spndm_T500_n40_b2",
                                  "ddim_eta0_noclip_vpred_n15_b2",
                                  "ddim_eta05_thresh_n10_b2_list",
                                  "ddpm_small_log_n30_b2",
                                  "ddpm_learned_range_n20_b2_list"};
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) case_through_cli("extra_pipeline", extra[i]);
    batch_independence();
    threads_and_pf();
    /* clean up the temporary outputs */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return TEST_SUMMARY();
}
