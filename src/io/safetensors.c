/* safetensors reader. st_open maps the file read-only and hands the mapping to st_parse, the one
 * parser for files and memory buffers. Checks run in the order documented in safetensors.h;
 * nothing outside [buf, buf + size) is ever read, whatever the header says. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"
#include "core.h"
#include "tensors.h"
#include "weights.h"
#include "json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB */
/* JSON numbers are doubles: integers are exact only below 2^53. */
#define ST_MAX_JSON_INT 9007199254740992.0

static const tt_dtype st_dtypes[] = {TT_F32, TT_F16, TT_BF16};

/* dtypes of the safetensors format that this reader does not load */
static const char *const st_unsupported[] = {
    "F64",  "I64",     "I32",     "I16",     "I8",      "U64",     "U32", "U16", "U8",
    "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",  "C64", "C128",
};

/* Parser state: the table being filled plus what the checks need. */
typedef struct {
    tt_table *f;
    pndm_error *err;
    const unsigned char *data; /* start of the byte buffer (after the header) */
    size_t data_size;
    uint64_t *begin; /* per tensor, parallel to f->tensors while parsing */
    uint64_t *end;
} st_parser;

/* Fail with "<source>: tensor '<name>': <message>" (or "<source>: <message>" for name NULL). */
static pndm_status st_fail(st_parser *p, pndm_status code, const char *name, const char *fmt, ...) CORE_PRINTF(4, 5);
static pndm_status st_fail(st_parser *p, pndm_status code, const char *name, const char *fmt, ...) {
    char msg[768], src[160], qn[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    core_quote(src, sizeof src, p->f->source);
    if (name) {
        core_quote(qn, sizeof qn, name);
        return core_fail(p->err, code, "%s: tensor '%s': %s", src, qn, msg);
    }
    return core_fail(p->err, code, "%s: %s", src, msg);
}

/* A JSON number that is a non-negative integer below 2^53; 1 on success. */
static int st_json_uint(const cJSON *j, uint64_t *out) {
    long long v;
    if (!core_json_int(j, 0, ST_MAX_JSON_INT - 1, &v)) return 0;
    *out = (uint64_t)v;
    return 1;
}

static pndm_status st_parse_dtype(st_parser *p, const char *name, const cJSON *entry, tt_dtype *out) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!d) return st_fail(p, PNDM_ERR_MODEL, name, "missing \"dtype\"");
    if (!cJSON_IsString(d) || !d->valuestring)
        return st_fail(p, PNDM_ERR_MODEL, name, "\"dtype\" is %s, expected a string", core_json_type(d));
    for (int i = 0; i < (int)(sizeof st_dtypes / sizeof st_dtypes[0]); i++)
        if (strcmp(d->valuestring, tt_dtype_name(st_dtypes[i])) == 0) {
            *out = st_dtypes[i];
            return PNDM_OK;
        }
    char q[160];
    core_quote(q, sizeof q, d->valuestring);
    for (size_t i = 0; i < sizeof st_unsupported / sizeof st_unsupported[0]; i++)
        if (strcmp(d->valuestring, st_unsupported[i]) == 0)
            return st_fail(p, PNDM_ERR_MODEL, name, "dtype %s is not supported (only F32, F16, BF16)", q);
    return st_fail(p, PNDM_ERR_MODEL, name, "unknown dtype '%s' (supported: F32, F16, BF16)", q);
}

static pndm_status st_parse_shape(st_parser *p, const char *name, const cJSON *entry, tt_tensor *t) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!s) return st_fail(p, PNDM_ERR_MODEL, name, "missing \"shape\"");
    if (!cJSON_IsArray(s))
        return st_fail(p, PNDM_ERR_MODEL, name, "\"shape\" is %s, expected an array", core_json_type(s));
    int n = cJSON_GetArraySize(s);
    if (n > TT_MAX_DIMS)
        return st_fail(p, PNDM_ERR_MODEL, name, "shape has %d dimensions (at most %d supported)", n, TT_MAX_DIMS);
    int i = 0;
    size_t count = 1;
    int overflow = 0;
    for (const cJSON *e = s->child; e; e = e->next, i++) {
        uint64_t v;
        if (!st_json_uint(e, &v)) {
            if (cJSON_IsNumber(e))
                return st_fail(p, PNDM_ERR_MODEL, name, "shape[%d] = %.15g is not a non-negative integer below 2^53", i,
                               e->valuedouble);
            return st_fail(p, PNDM_ERR_MODEL, name, "shape[%d] is %s, expected a non-negative integer", i,
                           core_json_type(e));
        }
        t->shape[i] = (int64_t)v;
        if (!core_mul_size(count, (size_t)v, &count)) overflow = 1;
    }
    t->ndim = n;
    char sh[256];
    tt_format_shape(sh, sizeof sh, t->ndim, t->shape);
    /* a zero dimension makes the product 0 whatever the others are */
    for (i = 0; i < n; i++)
        if (t->shape[i] == 0) {
            overflow = 0;
            count = 0;
        }
    size_t esize = tt_dtype_size(t->dtype);
    if (overflow || !core_mul_size(count, esize, &t->nbytes))
        return st_fail(p, PNDM_ERR_MODEL, name, "shape %s x %s overflows the address space", sh,
                       tt_dtype_name(t->dtype));
    t->count = count;
    return PNDM_OK;
}

static pndm_status st_parse_offsets(st_parser *p, const char *name, const cJSON *entry, const tt_tensor *t,
                                    uint64_t *begin, uint64_t *end) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!o) return st_fail(p, PNDM_ERR_MODEL, name, "missing \"data_offsets\"");
    if (!cJSON_IsArray(o))
        return st_fail(p, PNDM_ERR_MODEL, name, "\"data_offsets\" is %s, expected an array [begin, end]",
                       core_json_type(o));
    int n = cJSON_GetArraySize(o);
    if (n != 2)
        return st_fail(p, PNDM_ERR_MODEL, name, "\"data_offsets\" has %d element%s, expected 2 [begin, end]", n,
                       n == 1 ? "" : "s");
    uint64_t v[2];
    const cJSON *e = o->child;
    for (int i = 0; i < 2; i++, e = e->next) {
        if (!st_json_uint(e, &v[i])) {
            if (cJSON_IsNumber(e))
                return st_fail(p, PNDM_ERR_MODEL, name,
                               "data_offsets[%d] = %.15g is not a non-negative integer below 2^53", i, e->valuedouble);
            return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets[%d] is %s, expected a non-negative integer", i,
                           core_json_type(e));
        }
    }
    unsigned long long b = v[0], en = v[1];
    if (b > en) return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets [%llu, %llu] are reversed (begin > end)", b, en);
    if (en > (uint64_t)p->data_size)
        return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets [%llu, %llu] end beyond the %zu bytes of tensor data", b,
                       en, p->data_size);
    if (en - b != (uint64_t)t->nbytes) {
        char sh[256];
        tt_format_shape(sh, sizeof sh, t->ndim, t->shape);
        return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets [%llu, %llu] give %llu bytes, shape %s x %s needs %zu", b,
                       en, en - b, sh, tt_dtype_name(t->dtype), t->nbytes);
    }
    *begin = v[0];
    *end = v[1];
    return PNDM_OK;
}

static pndm_status st_parse_metadata(st_parser *p, const cJSON *meta) {
    if (!cJSON_IsObject(meta))
        return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" is %s, expected an object of strings",
                       core_json_type(meta));
    for (const cJSON *e = meta->child; e; e = e->next) {
        char q[160];
        core_quote(q, sizeof q, e->string);
        if (!cJSON_IsString(e) || !e->valuestring)
            return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" value of '%s' is %s, expected a string", q,
                           core_json_type(e));
        if (tt_meta(p->f, e->string)) return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" has key '%s' twice", q);
        pndm_status s = tt_set_meta(p->f, e->string, e->valuestring, p->err);
        if (s) return s;
    }
    return PNDM_OK;
}

typedef struct {
    const char *name;
    uint64_t begin, end;
    int index;
} st_sort_item;

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const st_sort_item *)a)->name, ((const st_sort_item *)b)->name);
}

static int st_cmp_offset(const void *a, const void *b) {
    const st_sort_item *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

/* Step 4: duplicate names, overlapping byte ranges. */
static pndm_status st_check_layout(st_parser *p) {
    tt_table *f = p->f;
    int n = f->n_tensors;
    if (n == 0) return PNDM_OK;
    st_sort_item *items = malloc((size_t)n * sizeof *items);
    if (!items) return st_fail(p, PNDM_ERR_NOMEM, NULL, "out of memory checking %d tensors", n);
    for (int i = 0; i < n; i++) items[i] = (st_sort_item){f->tensors[i].name, p->begin[i], p->end[i], i};
    pndm_status s = PNDM_OK;
    qsort(items, (size_t)n, sizeof *items, st_cmp_name);
    for (int i = 1; i < n && s == PNDM_OK; i++)
        if (strcmp(items[i - 1].name, items[i].name) == 0)
            s = st_fail(p, PNDM_ERR_MODEL, items[i].name, "name appears twice in the header");
    if (s == PNDM_OK) {
        qsort(items, (size_t)n, sizeof *items, st_cmp_offset);
        int prev = -1; /* last non-empty tensor in offset order */
        for (int i = 0; i < n && s == PNDM_OK; i++) {
            if (items[i].begin == items[i].end) continue; /* empty tensors occupy no bytes */
            if (prev >= 0 && items[i].begin < items[prev].end) {
                char q[160];
                core_quote(q, sizeof q, items[prev].name);
                s = st_fail(p, PNDM_ERR_MODEL, items[i].name,
                            "data_offsets [%llu, %llu] overlap those of tensor '%s' [%llu, %llu]",
                            (unsigned long long)items[i].begin, (unsigned long long)items[i].end, q,
                            (unsigned long long)items[prev].begin, (unsigned long long)items[prev].end);
            }
            if (prev < 0 || items[i].end > items[prev].end) prev = i;
        }
    }
    free(items);
    return s;
}

static pndm_status st_parse_entries(st_parser *p, const cJSON *root) {
    tt_table *f = p->f;
    int n = cJSON_GetArraySize(root);
    p->begin = calloc((size_t)n + 1, sizeof *p->begin);
    p->end = calloc((size_t)n + 1, sizeof *p->end);
    if (!p->begin || !p->end) return st_fail(p, PNDM_ERR_NOMEM, NULL, "out of memory for %d header entries", n);
    int seen_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        pndm_status s;
        if (strcmp(name, "__metadata__") == 0) {
            if (seen_meta) return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" appears twice in the header");
            seen_meta = 1;
            if ((s = st_parse_metadata(p, e)) != PNDM_OK) return s;
            continue;
        }
        if (!cJSON_IsObject(e))
            return st_fail(p, PNDM_ERR_MODEL, name, "header entry is %s, expected an object", core_json_type(e));
        tt_tensor t;
        memset(&t, 0, sizeof t);
        uint64_t begin = 0, end = 0;
        if ((s = st_parse_dtype(p, name, e, &t.dtype)) != PNDM_OK) return s;
        if ((s = st_parse_shape(p, name, e, &t)) != PNDM_OK) return s;
        if ((s = st_parse_offsets(p, name, e, &t, &begin, &end)) != PNDM_OK) return s;
        p->begin[f->n_tensors] = begin;
        p->end[f->n_tensors] = end;
        if ((s = tt_add(f, name, t.dtype, t.ndim, t.shape, p->data + begin, NULL, p->err)) != PNDM_OK) return s;
    }
    return PNDM_OK;
}

pndm_status st_parse(tt_table *f, const void *buf, size_t size, const char *name, pndm_error *err) {
    st_parser p = {.f = f, .err = err};
    pndm_status s = tt_init(f, name ? name : "<safetensors>", err);
    if (s) return s;
    const unsigned char *b = buf;

    /* 1. header length */
    uint64_t hlen = 0;
    if (size < 8 || !b) {
        s = st_fail(&p, PNDM_ERR_MODEL, NULL, "file too small (%zu bytes) for the 8-byte header length", size);
    } else {
        for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
        if (hlen > ST_MAX_HEADER)
            s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header length %llu exceeds the 100 MiB limit (file is %zu bytes)",
                        (unsigned long long)hlen, size);
        else if (hlen > (uint64_t)(size - 8))
            s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header length %llu runs past the end of the file (%zu bytes)",
                        (unsigned long long)hlen, size);
    }
    if (s != PNDM_OK) {
        tt_free(f);
        return s;
    }
    const char *hdr = (const char *)b + 8;
    p.data = b + 8 + hlen;
    p.data_size = size - 8 - (size_t)hlen;

    /* 2. JSON object */
    const void *nul = memchr(hdr, 0, (size_t)hlen);
    cJSON *root = NULL;
    if (hlen == 0) {
        s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header is empty (expected a JSON object)");
    } else if (nul) {
        s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header is not JSON: NUL byte at header offset %zu",
                    (size_t)((const char *)nul - hdr));
    } else {
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
        if (!root) {
            size_t at = end && end >= hdr && end <= hdr + hlen ? (size_t)(end - hdr) : 0;
            s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header is not valid JSON (error near header offset %zu)", at);
        } else {
            /* cJSON stops after the value and its trailing whitespace; padding must be spaces */
            while (end && end < hdr + hlen && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
            if (end != hdr + hlen)
                s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header is not valid JSON: trailing data at header offset %zu",
                            end && end >= hdr ? (size_t)(end - hdr) : 0);
            else if (!cJSON_IsObject(root))
                s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header is %s, expected a JSON object", core_json_type(root));
        }
    }

    /* 3. entries, 4. names and layout */
    if (s == PNDM_OK) s = st_parse_entries(&p, root);
    if (s == PNDM_OK) s = st_check_layout(&p);
    cJSON_Delete(root);
    free(p.begin);
    free(p.end);
    if (s != PNDM_OK) {
        tt_free(f);
        return s;
    }
    /* sorted by name for tt_find (names are already known to be distinct) */
    s = tt_finish(f, err);
    if (s) tt_free(f);
    return s;
}

pndm_status st_open(tt_table *f, const char *path, pndm_error *err) {
    memset(f, 0, sizeof *f);
    void *map;
    size_t size;
    pndm_status s = wt_map_file(path, &map, &size, err);
    if (s) return s;
    static const unsigned char empty[1] = {0};
    s = st_parse(f, map ? map : empty, size, path, err);
    if (s != PNDM_OK) {
        if (map) munmap(map, size);
        return s;
    }
    if (map && (s = tt_own_mapping(f, map, size, err)) != PNDM_OK) {
        tt_free(f);
        munmap(map, size);
    }
    return s;
}
