// ctest-label: unit
/* The weights id (pndm_model_sha256, tt_scan): the same weights give the same id whatever the
 * layout, tensor order or thread count; one changed bit, name, dtype or shape changes it; and it
 * matches tools/pndm_format.weights_sha256 (an implementation apart from the C one, run when the
 * fixtures were made: tests/data/weights_id/make.py). */
#include "harness.h"
#include "pndm.h"
#include "tensors.h"

#include <stdio.h>
#include <string.h>

static void read_line(const char *path, char *out, size_t size) {
    out[0] = 0;
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    if (fgets(out, (int)size, f)) out[strcspn(out, "\n")] = 0;
    fclose(f);
}

static void model_id(const char *path, char out[65]) {
    pndm_error err;
    pndm_model *m = NULL;
    out[0] = 0;
    pndm_status st = pndm_model_load(path, &m, &err);
    CHECK_MSG(st == PNDM_OK, "%s: %s", path, err.msg);
    if (st) return;
    snprintf(out, 65, "%s", pndm_model_sha256(m));
    CHECK(strlen(pndm_model_sha256(m)) == 64);
    pndm_model_free(m);
}

/* A table of three tensors added in the order given by `order`. */
static void table_id(const int *order, int n_threads, const char *rename0, tt_dtype dt0, int64_t d0, char out[65]) {
    static const float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, 0.5f}, c[1] = {7};
    const char *names[3] = {rename0 ? rename0 : "a.weight", "b.bias", "c"};
    const void *data[3] = {a, b, c};
    int64_t shapes[3][2] = {{d0, 6 / d0}, {2, 0}, {1, 0}};
    int ndims[3] = {2, 1, 1};
    tt_table t;
    pndm_error err;
    CHECK(tt_init(&t, "ids", &err) == PNDM_OK);
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        tt_dtype dt = i == 0 ? dt0 : TT_F32;
        int64_t sh[2] = {shapes[i][0], shapes[i][1]};
        if (i == 0 && dt0 != TT_F32) sh[1] = 3 / d0; /* 6 floats = 12 halves: the same bytes */
        if (i == 0 && dt0 != TT_F32) sh[0] = d0 * 4;
        CHECK(tt_add(&t, names[i], dt, ndims[i], sh, data[i], NULL, &err) == PNDM_OK);
    }
    CHECK(tt_finish(&t, &err) == PNDM_OK);
    CHECK(tt_scan(&t, n_threads, out, &err) == PNDM_OK);
    tt_free(&t);
}

int main(void) {
    char want[128], want_changed[128], single[65], folder[65], changed[65];
    read_line(PNDM_TEST_DATA "/weights_id/expected.txt", want, sizeof want);
    read_line(PNDM_TEST_DATA "/weights_id/expected_changed.txt", want_changed, sizeof want_changed);
    /* one model, two layouts: a pndm single file and a diffusers folder with the tensors in the
     * reverse order and no metadata */
    model_id(PNDM_TEST_DATA "/hostile/tiny.safetensors", single);
    model_id(PNDM_TEST_DATA "/weights_id/folder", folder);
    model_id(PNDM_TEST_DATA "/weights_id/changed", changed);
    CHECK_MSG(strcmp(single, want) == 0, "single file id %s, tools/pndm_format.py says %s", single, want);
    CHECK_MSG(strcmp(folder, want) == 0, "folder id %s, want %s", folder, want);
    CHECK_MSG(strcmp(changed, want_changed) == 0 && strcmp(changed, want) != 0, "one changed bit: %s (want %s)",
              changed, want_changed);

    /* order of insertion and thread count do not matter; name, dtype and shape do */
    const int o1[3] = {0, 1, 2}, o2[3] = {2, 0, 1};
    char x[65], y[65], z[65];
    table_id(o1, 1, NULL, TT_F32, 2, x);
    table_id(o2, 3, NULL, TT_F32, 2, y);
    CHECK_MSG(strcmp(x, y) == 0, "order / threads changed the id: %s vs %s", x, y);
    table_id(o1, 2, "a.weigh", TT_F32, 2, z);
    CHECK(strcmp(x, z) != 0);
    table_id(o1, 1, NULL, TT_F32, 3, z); /* (3, 2) instead of (2, 3): same bytes */
    CHECK(strcmp(x, z) != 0);
    table_id(o1, 1, NULL, TT_F16, 1, z); /* the same 24 bytes read as 12 halves */
    CHECK(strcmp(x, z) != 0);
    return TEST_SUMMARY();
}
