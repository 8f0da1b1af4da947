/* safetensors reader. st_open maps the file read-only and hands the mapping to st_parse, the one
 * parser for files and memory buffers. Checks run in the order documented in safetensors.h;
 * nothing outside [buf, buf + size) is ever read, whatever the header says. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c: F32 tensors are used in place; a little-endian host is required"
#endif

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB */
/* JSON numbers are doubles: integers are exact only below 2^53. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct {
    const char *name;
    size_t esize;
} st_dtype_info;

static const st_dtype_info st_dtypes[] = {
    [ST_F32] = {"F32", 4},
    [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},
};

/* dtypes of the safetensors format that this reader does not load */
static const char *const st_unsupported[] = {
    "F64", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "C128",
};

/* Parser state: the file being built plus what the checks need. */
typedef struct {
    st_file *f;
    pndm_error *err;
    const unsigned char *data; /* start of the byte buffer (after the header) */
    size_t data_size;
    uint64_t *begin;           /* per tensor, parallel to f->tensors while parsing */
    uint64_t *end;
} st_parser;

/* Copy `s` for a message: printable ASCII kept, other bytes as \xNN, at most ~120 chars. */
static void st_quote(char *buf, size_t size, const char *s) {
    size_t o = 0;
    if (size == 0) return;
    if (!s) s = "(null)";
    for (size_t i = 0; s[i] && o + 8 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 120) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 32 && c < 127 && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        }
    }
    buf[o] = 0;
}

/* Fail with "<source>: tensor '<name>': <message>" (or "<source>: <message>" for name NULL). */
static pndm_status st_fail(st_parser *p, pndm_status code, const char *name, const char *fmt, ...)
    PNDM_PRINTF(4, 5);
static pndm_status st_fail(st_parser *p, pndm_status code, const char *name, const char *fmt, ...) {
    char msg[768], src[160], qn[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    st_quote(src, sizeof src, p->f->source ? p->f->source : "<safetensors>");
    if (name) {
        st_quote(qn, sizeof qn, name);
        return pndm_fail(p->err, code, "%s: tensor '%s': %s", src, qn, msg);
    }
    return pndm_fail(p->err, code, "%s: %s", src, msg);
}

static const char *st_json_type(const cJSON *j) {
    if (!j) return "nothing";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid JSON";
}

/* A JSON number that is a non-negative integer below 2^53; 1 on success. */
static int st_json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0.0) || !(v < ST_MAX_JSON_INT) || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

/* "[4, 3, 3, 3]" */
static void st_format_shape(char *buf, size_t size, const int64_t *shape, int ndim) {
    size_t o = 0;
    buf[0] = 0;
    o += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static pndm_status st_parse_dtype(st_parser *p, const char *name, const cJSON *entry, st_dtype *out) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!d) return st_fail(p, PNDM_ERR_MODEL, name, "missing \"dtype\"");
    if (!cJSON_IsString(d) || !d->valuestring)
        return st_fail(p, PNDM_ERR_MODEL, name, "\"dtype\" is %s, expected a string", st_json_type(d));
    for (int i = 0; i < (int)(sizeof st_dtypes / sizeof st_dtypes[0]); i++)
        if (strcmp(d->valuestring, st_dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return PNDM_OK;
        }
    char q[160];
    st_quote(q, sizeof q, d->valuestring);
    for (size_t i = 0; i < sizeof st_unsupported / sizeof st_unsupported[0]; i++)
        if (strcmp(d->valuestring, st_unsupported[i]) == 0)
            return st_fail(p, PNDM_ERR_MODEL, name, "dtype %s is not supported (only F32, F16, BF16)", q);
    return st_fail(p, PNDM_ERR_MODEL, name, "unknown dtype '%s' (supported: F32, F16, BF16)", q);
}

static pndm_status st_parse_shape(st_parser *p, const char *name, const cJSON *entry, st_tensor *t) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!s) return st_fail(p, PNDM_ERR_MODEL, name, "missing \"shape\"");
    if (!cJSON_IsArray(s))
        return st_fail(p, PNDM_ERR_MODEL, name, "\"shape\" is %s, expected an array", st_json_type(s));
    int n = cJSON_GetArraySize(s);
    if (n > ST_MAX_DIMS)
        return st_fail(p, PNDM_ERR_MODEL, name, "shape has %d dimensions (at most %d supported)", n, ST_MAX_DIMS);
    int i = 0;
    size_t count = 1;
    int overflow = 0;
    for (const cJSON *e = s->child; e; e = e->next, i++) {
        uint64_t v;
        if (!st_json_uint(e, &v)) {
            if (cJSON_IsNumber(e))
                return st_fail(p, PNDM_ERR_MODEL, name, "shape[%d] = %.15g is not a non-negative integer below 2^53",
                               i, e->valuedouble);
            return st_fail(p, PNDM_ERR_MODEL, name, "shape[%d] is %s, expected a non-negative integer", i,
                           st_json_type(e));
        }
        t->shape[i] = (int64_t)v;
        if (!pndm_mul_size(count, (size_t)v, &count)) overflow = 1;
    }
    t->ndim = n;
    char sh[256];
    st_format_shape(sh, sizeof sh, t->shape, t->ndim);
    /* a zero dimension makes the product 0 whatever the others are */
    for (i = 0; i < n; i++)
        if (t->shape[i] == 0) { overflow = 0; count = 0; }
    size_t esize = st_dtypes[t->dtype].esize;
    if (overflow || !pndm_mul_size(count, esize, &t->nbytes))
        return st_fail(p, PNDM_ERR_MODEL, name, "shape %s x %s overflows the address space", sh,
                       st_dtypes[t->dtype].name);
    t->count = count;
    return PNDM_OK;
}

static pndm_status st_parse_offsets(st_parser *p, const char *name, const cJSON *entry, const st_tensor *t,
                                    uint64_t *begin, uint64_t *end) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!o) return st_fail(p, PNDM_ERR_MODEL, name, "missing \"data_offsets\"");
    if (!cJSON_IsArray(o))
        return st_fail(p, PNDM_ERR_MODEL, name, "\"data_offsets\" is %s, expected an array [begin, end]",
                       st_json_type(o));
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
                           st_json_type(e));
        }
    }
    unsigned long long b = v[0], en = v[1];
    if (b > en)
        return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets [%llu, %llu] are reversed (begin > end)", b, en);
    if (en > (uint64_t)p->data_size)
        return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets [%llu, %llu] end beyond the %zu bytes of tensor data",
                       b, en, p->data_size);
    if (en - b != (uint64_t)t->nbytes) {
        char sh[256];
        st_format_shape(sh, sizeof sh, t->shape, t->ndim);
        return st_fail(p, PNDM_ERR_MODEL, name, "data_offsets [%llu, %llu] give %llu bytes, shape %s x %s needs %zu",
                       b, en, en - b, sh, st_dtypes[t->dtype].name, t->nbytes);
    }
    *begin = v[0];
    *end = v[1];
    return PNDM_OK;
}

static pndm_status st_parse_metadata(st_parser *p, const cJSON *meta) {
    st_file *f = p->f;
    if (!cJSON_IsObject(meta))
        return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" is %s, expected an object of strings",
                       st_json_type(meta));
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values)
        return st_fail(p, PNDM_ERR_NOMEM, NULL, "out of memory reading __metadata__");
    for (const cJSON *e = meta->child; e; e = e->next) {
        char q[160];
        st_quote(q, sizeof q, e->string);
        if (!cJSON_IsString(e) || !e->valuestring)
            return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" value of '%s' is %s, expected a string", q,
                           st_json_type(e));
        for (int k = 0; k < f->n_meta; k++)
            if (strcmp(f->meta_keys[k], e->string) == 0)
                return st_fail(p, PNDM_ERR_MODEL, NULL, "\"__metadata__\" has key '%s' twice", q);
        f->meta_keys[f->n_meta] = strdup(e->string);
        f->meta_values[f->n_meta] = strdup(e->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return st_fail(p, PNDM_ERR_NOMEM, NULL, "out of memory reading __metadata__");
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

static int st_cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Step 4: duplicate names, overlapping byte ranges. */
static pndm_status st_check_layout(st_parser *p) {
    st_file *f = p->f;
    int n = f->n_tensors;
    if (n == 0) return PNDM_OK;
    st_sort_item *items = malloc((size_t)n * sizeof *items);
    if (!items) return st_fail(p, PNDM_ERR_NOMEM, NULL, "out of memory checking %d tensors", n);
    for (int i = 0; i < n; i++)
        items[i] = (st_sort_item){f->tensors[i].name, p->begin[i], p->end[i], i};
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
                st_quote(q, sizeof q, items[prev].name);
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
    st_file *f = p->f;
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    p->begin = calloc((size_t)n + 1, sizeof *p->begin);
    p->end = calloc((size_t)n + 1, sizeof *p->end);
    if (!f->tensors || !p->begin || !p->end)
        return st_fail(p, PNDM_ERR_NOMEM, NULL, "out of memory for %d header entries", n);
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
            return st_fail(p, PNDM_ERR_MODEL, name, "header entry is %s, expected an object", st_json_type(e));
        st_tensor *t = &f->tensors[f->n_tensors];
        uint64_t begin = 0, end = 0;
        if ((s = st_parse_dtype(p, name, e, &t->dtype)) != PNDM_OK) return s;
        if ((s = st_parse_shape(p, name, e, t)) != PNDM_OK) return s;
        if ((s = st_parse_offsets(p, name, e, t, &begin, &end)) != PNDM_OK) return s;
        t->name = strdup(name);
        if (!t->name) return st_fail(p, PNDM_ERR_NOMEM, name, "out of memory");
        t->data = p->data + begin;
        p->begin[f->n_tensors] = begin;
        p->end[f->n_tensors] = end;
        f->n_tensors++;
    }
    return PNDM_OK;
}

pndm_status st_parse(st_file *f, const void *buf, size_t size, const char *name, pndm_error *err) {
    memset(f, 0, sizeof *f);
    st_parser p = {.f = f, .err = err};
    f->source = strdup(name ? name : "<safetensors>");
    if (!f->source) return pndm_fail(err, PNDM_ERR_NOMEM, "out of memory");
    const unsigned char *b = buf;

    /* 1. header length */
    pndm_status s = PNDM_OK;
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
        st_close(f);
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
                s = st_fail(&p, PNDM_ERR_MODEL, NULL, "header is %s, expected a JSON object", st_json_type(root));
        }
    }

    /* 3. entries, 4. names and layout */
    if (s == PNDM_OK) s = st_parse_entries(&p, root);
    if (s == PNDM_OK) s = st_check_layout(&p);
    cJSON_Delete(root);
    free(p.begin);
    free(p.end);
    if (s != PNDM_OK) {
        st_close(f);
        return s;
    }
    /* sorted by name for st_find */
    if (f->n_tensors > 1) qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, st_cmp_tensor);
    return PNDM_OK;
}

pndm_status st_open(st_file *f, const char *path, pndm_error *err) {
    memset(f, 0, sizeof *f);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return pndm_fail(err, PNDM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pndm_status s = pndm_fail(err, PNDM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pndm_fail(err, PNDM_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return pndm_fail(err, PNDM_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            pndm_status s = pndm_fail(err, PNDM_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(errno));
            close(fd);
            return s;
        }
    }
    close(fd);
    static const unsigned char empty[1] = {0};
    pndm_status s = st_parse(f, map ? map : empty, size, path, err);
    if (s != PNDM_OK) {
        if (map) munmap(map, size);
        return s;
    }
    f->map = map;
    f->map_size = size;
    return PNDM_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    if (f->map) munmap(f->map, f->map_size);
    free(f->source);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name || f->n_tensors == 0) return NULL;
    st_tensor key;
    memset(&key, 0, sizeof key);
    key.name = (char *)name;
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, st_cmp_tensor);
}

const char *st_meta(const st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign; /* +-0 */
        } else {
            /* subnormal: mant * 2^-24; normalise so the leading 1 moves to bit 10 */
            uint32_t e = 113; /* 127 - 15 + 1 */
            while (!(mant & 0x400u)) {
                mant <<= 1;
                e--;
            }
            bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf, or nan with its payload */
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

pndm_status st_tensor_f32(const st_file *f, const st_tensor *t, const float **out, int *owned, pndm_error *err) {
    *out = NULL;
    *owned = 0;
    if (t->dtype == ST_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return PNDM_OK;
    }
    size_t bytes;
    if (!pndm_mul_size(t->count, sizeof(float), &bytes))
        return pndm_fail(err, PNDM_ERR_NOMEM, "%s: tensor '%s': too large", f && f->source ? f->source : "?", t->name);
    float *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        return pndm_fail(err, PNDM_ERR_NOMEM, "%s: tensor '%s': cannot allocate %zu bytes",
                         f && f->source ? f->source : "?", t->name, bytes);
    const unsigned char *src = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (t->count) memcpy(buf, src, bytes);
        break;
    case ST_F16:
        for (size_t i = 0; i < t->count; i++)
            buf[i] = st_f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    case ST_BF16:
        for (size_t i = 0; i < t->count; i++)
            buf[i] = st_bf16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    }
    *out = buf;
    *owned = 1;
    return PNDM_OK;
}

/* Index of the first element whose exponent bits (mask) are all ones, NaN or Inf, or n if none.
 * esize 4 (F32) or 2 (F16, BF16). The common case (none) is a branch-free OR over blocks, which
 * the compiler vectorises. */
static size_t st_first_nonfinite(const unsigned char *p, size_t n, size_t esize, uint32_t mask) {
    const size_t block = 1024;
    for (size_t b0 = 0; b0 < n; b0 += block) {
        size_t b1 = n - b0 < block ? n : b0 + block;
        uint32_t any = 0;
        if (esize == 4) {
            for (size_t i = b0; i < b1; i++) {
                uint32_t v;
                memcpy(&v, p + 4 * i, 4);
                any |= (uint32_t)((v & mask) == mask);
            }
        } else {
            for (size_t i = b0; i < b1; i++) {
                uint16_t v;
                memcpy(&v, p + 2 * i, 2);
                any |= (uint32_t)((v & mask) == mask);
            }
        }
        if (!any) continue;
        for (size_t i = b0; i < b1; i++) {
            uint32_t v = 0;
            memcpy(&v, p + esize * i, esize);
            if ((v & mask) == mask) return i;
        }
    }
    return n;
}

/* Hand back the mapped pages wholly inside [p, p + n) (read-only file mapping: a later read
 * faults them in again from the file), so a scan does not keep the whole file resident. */
void st_drop_pages(const st_file *f, const void *p, size_t n) {
    if (!f->map || n == 0) return;
    uintptr_t lo = (uintptr_t)p, hi = lo + n, m0 = (uintptr_t)f->map, m1 = m0 + f->map_size;
    long pg = sysconf(_SC_PAGESIZE);
    if (lo < m0 || hi > m1 || pg <= 0) return;
    uintptr_t a = (lo + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg, b = hi / (uintptr_t)pg * (uintptr_t)pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

pndm_status st_check_finite(const st_file *f, pndm_error *err) {
    for (int k = 0; k < f->n_tensors; k++) {
        const st_tensor *t = &f->tensors[k];
        const uint32_t mask = t->dtype == ST_F32 ? 0x7f800000u : t->dtype == ST_F16 ? 0x7c00u : 0x7f80u;
        size_t i = st_first_nonfinite(t->data, t->count, st_dtypes[t->dtype].esize, mask);
        st_drop_pages(f, t->data, t->nbytes);
        if (i == t->count) continue;
        const size_t esize = st_dtypes[t->dtype].esize;
        uint32_t v = 0;
        memcpy(&v, (const unsigned char *)t->data + esize * i, esize);
        const uint32_t sign = esize == 4 ? 0x80000000u : 0x8000u;   // NaN: some mantissa bit set
        const char *what = (v & ~(sign | mask)) ? "NaN" : (v & sign) ? "-Inf" : "+Inf";
        char src[160], qn[160];
        st_quote(src, sizeof src, f->source ? f->source : "<safetensors>");
        st_quote(qn, sizeof qn, t->name);
        return pndm_fail(err, PNDM_ERR_MODEL,
                         "%s: tensor '%s': element %zu is %s (non-finite weights make every image NaN)", src, qn, i,
                         what);
    }
    return PNDM_OK;
}
