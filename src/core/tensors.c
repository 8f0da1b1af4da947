/* The tensor table (tensors.h): storage, lookup, dtype conversion and the finite-weights scan. */
#define _DEFAULT_SOURCE
#include "tensors.h"
#include "core.h"
#include "sha256.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensors.c: F32 tensors are used in place; a little-endian host is required"
#endif

static const struct {
    const char *name;
    size_t size;
} tt_dtypes[] = {
    [TT_F32] = {"F32", 4},
    [TT_F16] = {"F16", 2},
    [TT_BF16] = {"BF16", 2},
};

void tt_format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    if (size == 0) return;
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

const char *tt_dtype_name(tt_dtype d) { return tt_dtypes[d].name; }
size_t tt_dtype_size(tt_dtype d) { return tt_dtypes[d].size; }

static const char *tt_src(const tt_table *t) { return t && t->source ? t->source : "<tensors>"; }

pndm_status tt_init(tt_table *t, const char *source, pndm_error *err) {
    memset(t, 0, sizeof *t);
    t->source = strdup(source ? source : "<tensors>");
    if (!t->source) return core_fail(err, PNDM_ERR_NOMEM, "out of memory");
    return PNDM_OK;
}

void tt_free(tt_table *t) {
    if (!t) return;
    for (int i = 0; i < t->n_tensors; i++) free(t->tensors[i].name);
    free(t->tensors);
    for (int i = 0; i < t->n_meta; i++) {
        free(t->meta_keys[i]);
        free(t->meta_values[i]);
    }
    free(t->meta_keys);
    free(t->meta_values);
    for (int i = 0; i < t->n_regions; i++) {
        if (t->regions[i].mapped)
            munmap(t->regions[i].addr, t->regions[i].size);
        else
            free(t->regions[i].addr);
    }
    free(t->regions);
    free(t->source);
    memset(t, 0, sizeof *t);
}

pndm_status tt_add(tt_table *t, const char *name, tt_dtype dtype, int ndim, const int64_t *shape, const void *data,
                   tt_tensor **out, pndm_error *err) {
    char q[160];
    core_quote(q, sizeof q, name);
    if (ndim < 0 || ndim > TT_MAX_DIMS)
        return core_fail(err, PNDM_ERR_MODEL, "%s: tensor '%s': %d dimensions (at most %d supported)", tt_src(t), q,
                         ndim, TT_MAX_DIMS);
    size_t count = 1, nbytes;
    int overflow = 0, zero = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return core_fail(err, PNDM_ERR_MODEL, "%s: tensor '%s': negative dimension %lld", tt_src(t), q,
                             (long long)shape[i]);
        if (shape[i] == 0) zero = 1;
        if ((uint64_t)shape[i] > SIZE_MAX || !core_mul_size(count, (size_t)shape[i], &count)) overflow = 1;
    }
    if (zero) overflow = 0, count = 0;
    if (overflow || !core_mul_size(count, tt_dtypes[dtype].size, &nbytes))
        return core_fail(err, PNDM_ERR_MODEL, "%s: tensor '%s': shape overflows the address space", tt_src(t), q);
    if (t->n_tensors == t->cap_tensors) {
        int cap = t->cap_tensors ? 2 * t->cap_tensors : 64;
        tt_tensor *n = realloc(t->tensors, (size_t)cap * sizeof *n);
        if (!n) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
        t->tensors = n;
        t->cap_tensors = cap;
    }
    tt_tensor *x = &t->tensors[t->n_tensors];
    memset(x, 0, sizeof *x);
    x->name = strdup(name);
    if (!x->name) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
    x->dtype = dtype;
    x->ndim = ndim;
    for (int i = 0; i < ndim; i++) x->shape[i] = shape[i];
    x->count = count;
    x->nbytes = nbytes;
    x->data = data;
    t->n_tensors++;
    if (out) *out = x;
    return PNDM_OK;
}

pndm_status tt_rename(tt_table *t, int i, const char *name, pndm_error *err) {
    char *n = strdup(name);
    if (!n) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
    free(t->tensors[i].name);
    t->tensors[i].name = n;
    return PNDM_OK;
}

pndm_status tt_set_meta(tt_table *t, const char *key, const char *value, pndm_error *err) {
    char q[160];
    for (int k = 0; k < t->n_meta; k++)
        if (strcmp(t->meta_keys[k], key) == 0) {
            core_quote(q, sizeof q, key);
            return core_fail(err, PNDM_ERR_MODEL, "%s: metadata key '%s' appears twice", tt_src(t), q);
        }
    char **k2 = realloc(t->meta_keys, (size_t)(t->n_meta + 1) * sizeof *k2);
    if (k2) t->meta_keys = k2;
    char **v2 = k2 ? realloc(t->meta_values, (size_t)(t->n_meta + 1) * sizeof *v2) : NULL;
    if (v2) t->meta_values = v2;
    if (!k2 || !v2) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
    char *ks = strdup(key), *vs = strdup(value);
    if (!ks || !vs) {
        free(ks);
        free(vs);
        return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
    }
    t->meta_keys[t->n_meta] = ks;
    t->meta_values[t->n_meta] = vs;
    t->n_meta++;
    return PNDM_OK;
}

static pndm_status tt_own(tt_table *t, void *addr, size_t size, int mapped, pndm_error *err) {
    tt_region *r = realloc(t->regions, (size_t)(t->n_regions + 1) * sizeof *r);
    if (!r) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
    t->regions = r;
    t->regions[t->n_regions++] = (tt_region){addr, size, mapped};
    return PNDM_OK;
}

pndm_status tt_own_mapping(tt_table *t, void *addr, size_t size, pndm_error *err) {
    return tt_own(t, addr, size, 1, err);
}

pndm_status tt_own_buffer(tt_table *t, void *buf, size_t size, pndm_error *err) { return tt_own(t, buf, size, 0, err); }

static int tt_cmp(const void *a, const void *b) {
    return strcmp(((const tt_tensor *)a)->name, ((const tt_tensor *)b)->name);
}

pndm_status tt_finish(tt_table *t, pndm_error *err) {
    if (t->n_tensors > 1) qsort(t->tensors, (size_t)t->n_tensors, sizeof *t->tensors, tt_cmp);
    for (int i = 1; i < t->n_tensors; i++)
        if (strcmp(t->tensors[i - 1].name, t->tensors[i].name) == 0) {
            char q[160];
            core_quote(q, sizeof q, t->tensors[i].name);
            return core_fail(err, PNDM_ERR_MODEL, "%s: tensor '%s' appears twice", tt_src(t), q);
        }
    return PNDM_OK;
}

const tt_tensor *tt_find(const tt_table *t, const char *name) {
    if (!t || !name || t->n_tensors == 0) return NULL;
    tt_tensor key;
    memset(&key, 0, sizeof key);
    key.name = (char *)name;
    return bsearch(&key, t->tensors, (size_t)t->n_tensors, sizeof *t->tensors, tt_cmp);
}

const char *tt_meta(const tt_table *t, const char *key) {
    if (!t || !key) return NULL;
    for (int i = 0; i < t->n_meta; i++)
        if (strcmp(t->meta_keys[i], key) == 0) return t->meta_values[i];
    return NULL;
}

float tt_f16_to_f32(uint16_t h) {
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

float tt_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

pndm_status tt_tensor_f32(const tt_table *t, const tt_tensor *x, const float **out, int *owned, pndm_error *err) {
    *out = NULL;
    *owned = 0;
    if (x->dtype == TT_F32 && ((uintptr_t)x->data % sizeof(float)) == 0) {
        *out = x->data;
        return PNDM_OK;
    }
    size_t bytes;
    if (!core_mul_size(x->count, sizeof(float), &bytes))
        return core_fail(err, PNDM_ERR_NOMEM, "%s: tensor '%s': too large", tt_src(t), x->name);
    float *buf = malloc(bytes ? bytes : 1);
    if (!buf)
        return core_fail(err, PNDM_ERR_NOMEM, "%s: tensor '%s': cannot allocate %zu bytes", tt_src(t), x->name, bytes);
    const unsigned char *src = x->data;
    switch (x->dtype) {
    case TT_F32:
        if (x->count) memcpy(buf, src, bytes);
        break;
    case TT_F16:
        for (size_t i = 0; i < x->count; i++) buf[i] = tt_f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    case TT_BF16:
        for (size_t i = 0; i < x->count; i++) buf[i] = tt_bf16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    }
    *out = buf;
    *owned = 1;
    return PNDM_OK;
}

/* Index of the first element whose exponent bits (mask) are all ones, NaN or Inf, or n if none.
 * esize 4 (F32) or 2 (F16, BF16). The common case (none) is a branch-free OR over blocks, which
 * the compiler vectorises. */
static size_t tt_first_nonfinite(const unsigned char *p, size_t n, size_t esize, uint32_t mask) {
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

void tt_drop_pages(const tt_table *t, const void *p, size_t n) {
    if (!t || n == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t lo = (uintptr_t)p, hi = lo + n;
    for (int i = 0; i < t->n_regions; i++) {
        const tt_region *r = &t->regions[i];
        uintptr_t m0 = (uintptr_t)r->addr, m1 = m0 + r->size;
        if (!r->mapped || lo < m0 || hi > m1) continue;
        uintptr_t a = (lo + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg, b = hi / (uintptr_t)pg * (uintptr_t)pg;
        if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
        return;
    }
}

/* ---- the scan: finite check + content hash, tensor by tensor ------------------------------- */

/* What one tensor's scan found: the first non-finite element (count if none) and its data's
 * SHA-256. */
typedef struct {
    size_t bad;
    uint8_t digest[32];
} tt_scan_result;

typedef struct {
    const tt_table *t;
    tt_scan_result *res;
    int hash;
    int first, step; /* tensors first, first + step, ... */
} tt_scan_job;

/* Each tensor in chunks small enough to stay in cache between the finite check and the hash,
 * so the mapped file is read once; its pages are released after it. */
static void tt_scan_tensor(const tt_table *t, const tt_tensor *x, int hash, tt_scan_result *r) {
    const uint32_t mask = x->dtype == TT_F32 ? 0x7f800000u : x->dtype == TT_F16 ? 0x7c00u : 0x7f80u;
    const size_t esize = tt_dtypes[x->dtype].size, chunk = (size_t)64 << 10; /* elements */
    const unsigned char *p = x->data;
    sha256_ctx c;
    sha256_init(&c);
    r->bad = x->count;
    for (size_t i0 = 0; i0 < x->count; i0 += chunk) {
        size_t n = x->count - i0 < chunk ? x->count - i0 : chunk;
        size_t i = tt_first_nonfinite(p + i0 * esize, n, esize, mask);
        if (i < n && r->bad == x->count) {
            r->bad = i0 + i;
            if (!hash) break;
        }
        if (hash) sha256_update(&c, p + i0 * esize, n * esize);
    }
    if (hash) sha256_final(&c, r->digest);
    tt_drop_pages(t, x->data, x->nbytes);
}

static void *tt_scan_worker(void *arg) {
    tt_scan_job *j = arg;
    for (int k = j->first; k < j->t->n_tensors; k += j->step)
        tt_scan_tensor(j->t, &j->t->tensors[k], j->hash, &j->res[k]);
    return NULL;
}

/* The weights id: SHA-256 of one line per tensor, in name order (see tensors.h). */
static void tt_weights_digest(const tt_table *t, const tt_scan_result *res, char hex[65]) {
    sha256_ctx c;
    sha256_init(&c);
    static const char head[] = "pndm-weights-v1\n";
    sha256_update(&c, head, sizeof head - 1);
    for (int k = 0; k < t->n_tensors; k++) {
        const tt_tensor *x = &t->tensors[k];
        char line[64 + 16 + 24 * TT_MAX_DIMS + 32], dh[65];
        sha256_to_hex(res[k].digest, dh);
        int o = snprintf(line, sizeof line, "%s %s [", dh, tt_dtypes[x->dtype].name);
        for (int d = 0; d < x->ndim; d++)
            o += snprintf(line + o, sizeof line - (size_t)o, "%s%lld", d ? "," : "", (long long)x->shape[d]);
        o += snprintf(line + o, sizeof line - (size_t)o, "] %zu:", strlen(x->name));
        sha256_update(&c, line, (size_t)o);
        sha256_update(&c, x->name, strlen(x->name));
        sha256_update(&c, "\n", 1);
    }
    uint8_t d[32];
    sha256_final(&c, d);
    sha256_to_hex(d, hex);
}

pndm_status tt_scan(const tt_table *t, int n_threads, char weights_sha256[65], pndm_error *err) {
    const int n = t->n_tensors, hash = weights_sha256 != NULL;
    tt_scan_result *res = calloc(n > 0 ? (size_t)n : 1, sizeof *res);
    if (!res) return core_fail(err, PNDM_ERR_NOMEM, "%s: out of memory", tt_src(t));
    if (n_threads < 1) n_threads = 1;
    if (n_threads > TT_SCAN_MAX_THREADS) n_threads = TT_SCAN_MAX_THREADS;
    if (n_threads > n) n_threads = n > 0 ? n : 1;
    /* tensor k goes to worker k % n_threads: big and small tensors alternate in name order, so
     * the shares come out close enough; the result does not depend on the split */
    tt_scan_job jobs[TT_SCAN_MAX_THREADS];
    pthread_t tid[TT_SCAN_MAX_THREADS];
    int started[TT_SCAN_MAX_THREADS] = {0};
    for (int w = 0; w < n_threads; w++) jobs[w] = (tt_scan_job){t, res, hash, w, n_threads};
    for (int w = 1; w < n_threads; w++) started[w] = pthread_create(&tid[w], NULL, tt_scan_worker, &jobs[w]) == 0;
    /* a worker that could not start: its share is done here */
    for (int w = 0; w < n_threads; w++)
        if (!started[w]) tt_scan_worker(&jobs[w]);
    for (int w = 1; w < n_threads; w++)
        if (started[w]) pthread_join(tid[w], NULL);
    pndm_status st = PNDM_OK;
    for (int k = 0; k < n && !st; k++) { /* the first bad tensor in name order, whatever the split */
        const tt_tensor *x = &t->tensors[k];
        size_t i = res[k].bad;
        if (i == x->count) continue;
        const size_t esize = tt_dtypes[x->dtype].size;
        const uint32_t mask = x->dtype == TT_F32 ? 0x7f800000u : x->dtype == TT_F16 ? 0x7c00u : 0x7f80u;
        uint32_t v = 0;
        memcpy(&v, (const unsigned char *)x->data + esize * i, esize);
        const uint32_t sign = esize == 4 ? 0x80000000u : 0x8000u; // NaN: some mantissa bit set
        const char *what = (v & ~(sign | mask)) ? "NaN" : (v & sign) ? "-Inf" : "+Inf";
        char src[160], qn[160];
        core_quote(src, sizeof src, tt_src(t));
        core_quote(qn, sizeof qn, x->name);
        st =
            core_fail(err, PNDM_ERR_MODEL,
                      "%s: tensor '%s': element %zu is %s (non-finite weights make every image NaN)", src, qn, i, what);
    }
    if (!st && hash) tt_weights_digest(t, res, weights_sha256);
    free(res);
    return st;
}

pndm_status tt_check_finite(const tt_table *t, pndm_error *err) { return tt_scan(t, 1, NULL, err); }
