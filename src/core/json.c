/* Small JSON helpers shared by the config readers (see json.h). */
#include "json.h"
#include "core.h"

#include <math.h>
#include <string.h>

pndm_status core_json_parse_object(const char *json, size_t len, const char *source, const char *what, cJSON **out,
                                   pndm_error *err) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= json ? (size_t)(end - json) : 0;
        return core_fail(err, PNDM_ERR_MODEL, "%s: %s is not valid JSON (error at byte %zu)", source, what, pos);
    }
    for (const char *p = end; p && p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return core_fail(err, PNDM_ERR_MODEL, "%s: %s is not valid JSON (unexpected data at byte %zu)", source,
                             what, (size_t)(p - json));
        }
    }
    if (!cJSON_IsObject(root)) {
        pndm_status st =
            core_fail(err, PNDM_ERR_MODEL, "%s: %s must be a JSON object, got %s", source, what, core_json_type(root));
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return PNDM_OK;
}

const char *core_json_type(const cJSON *v) {
    if (!v) return "nothing";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

void core_json_repr(const cJSON *v, char *buf, size_t size) {
    if (!v) {
        snprintf(buf, size, "nothing");
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        snprintf(buf, size, "?");
        return;
    }
    if (strlen(s) > 40)
        snprintf(buf, size, "%.37s...", s);
    else
        snprintf(buf, size, "%s", s);
    cJSON_free(s);
}

int core_json_int(const cJSON *v, double lo, double hi, long long *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) return 0;
    *out = (long long)d;
    return 1;
}

typedef struct {
    const char *key;
    size_t index;
} json_key_ref;

static int key_ref_cmp(const void *a, const void *b) {
    const json_key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->index < y->index ? -1 : x->index > y->index);
}

/* Sorting keeps a hostile object with millions of keys at n log n. */
const char *core_json_duplicate_key(const cJSON *obj) {
    size_t n = 0;
    for (const cJSON *a = obj ? obj->child : NULL; a; a = a->next) n += a->string != NULL;
    if (n < 2) return NULL;
    json_key_ref *refs = malloc(n * sizeof *refs);
    if (!refs) { /* out of memory: the quadratic scan needs none */
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && strcmp(a->string, b->string) == 0) return a->string;
        return NULL;
    }
    size_t k = 0;
    for (const cJSON *a = obj->child; a; a = a->next)
        if (a->string) {
            refs[k] = (json_key_ref){a->string, k};
            k++;
        }
    qsort(refs, n, sizeof *refs, key_ref_cmp);
    const char *first = NULL;
    size_t first_index = n;
    for (size_t i = 0; i + 1 < n; i++)
        if (strcmp(refs[i].key, refs[i + 1].key) == 0 && refs[i].index < first_index &&
            (i == 0 || strcmp(refs[i - 1].key, refs[i].key) != 0)) {
            first = refs[i].key;
            first_index = refs[i].index;
        }
    free(refs);
    return first;
}
