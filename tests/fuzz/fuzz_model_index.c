/* Fuzz target: a diffusers pipeline folder as pndm_model_load reads it from disk. The input is
 * written as model_index.json; bytes after a first NUL (if any) become
 * scheduler/scheduler_config.json, which is then parsed as pndm-gen would. unet/ holds the tiny
 * test model (tests/data/hostile/tiny.safetensors with its config.json), set up once in a
 * temporary folder. */
#define _POSIX_C_SOURCE 200809L
#include "fuzz.h"
#include "pndm.h"
#include "pndm_io.h"
#include "safetensors.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PNDM_TEST_DATA
#error "PNDM_TEST_DATA must name tests/data"
#endif

static char g_dir[256], g_index[320], g_sched[320];

static void put_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
}

static void remove_tree(void) {
    char p[400];
    const char *files[] = {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                           "scheduler/scheduler_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/unet", g_dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/scheduler", g_dir);
    rmdir(p);
    rmdir(g_dir);
}

static void setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_index.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(g_dir));
    atexit(remove_tree);
    char p[400];
    snprintf(p, sizeof p, "%s/unet", g_dir);
    FUZZ_CHECK(mkdir(p, 0700) == 0);
    snprintf(p, sizeof p, "%s/scheduler", g_dir);
    FUZZ_CHECK(mkdir(p, 0700) == 0);
    /* the tiny pndm file doubles as diffusers weights; its embedded config becomes config.json */
    char *buf;
    size_t size;
    pndm_error err;
    FUZZ_CHECK(pndm_read_file(PNDM_TEST_DATA "/hostile/tiny.safetensors", 0, &buf, &size, &err) == PNDM_OK);
    tt_table f;
    FUZZ_CHECK(st_parse(&f, buf, size, "tiny", &err) == PNDM_OK);
    const char *cfg = tt_meta(&f, "pndm.unet_config");
    FUZZ_CHECK(cfg);
    snprintf(p, sizeof p, "%s/unet/config.json", g_dir);
    put_file(p, cfg, strlen(cfg));
    tt_free(&f);
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.safetensors", g_dir);
    put_file(p, buf, size);
    free(buf);
    snprintf(g_index, sizeof g_index, "%s/model_index.json", g_dir);
    snprintf(g_sched, sizeof g_sched, "%s/scheduler/scheduler_config.json", g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) setup();
    const uint8_t *nul = memchr(data, 0, size);
    size_t index_len = nul ? (size_t)(nul - data) : size;
    put_file(g_index, data, index_len);
    if (nul)
        put_file(g_sched, nul + 1, size - index_len - 1);
    else
        unlink(g_sched);
    pndm_model *m = NULL;
    pndm_error err = {0};
    pndm_status st = pndm_model_load(g_dir, &m, &err);
    if (st != PNDM_OK) {
        FUZZ_CHECK_ERR(st, err);
        FUZZ_CHECK(m == NULL);
        return 0;
    }
    FUZZ_CHECK(pndm_model_in_channels(m) == 1);
    pndm_scheduler_config sc;
    st = pndm_model_get_scheduler_config(m, &sc, &err);
    if (st == PNDM_OK)
        pndm_scheduler_config_free(&sc);
    else
        FUZZ_CHECK_ERR(st, err);
    pndm_model_free(m);
    return 0;
}
