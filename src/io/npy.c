/* .npy reader and writer (numpy format 1.0 / 2.0 / 3.0).
 * Reader checks, in order: magic, version, header length vs size, header dict syntax
 * ('descr', 'fortran_order', 'shape'), known dtype, dims (0..8, non-negative, no overflow),
 * data length == product(shape) * itemsize. */
#include "core.h"
#include "pndm_io.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

static size_t npy_itemsize(pndm_npy_dtype d) {
    switch (d) {
    case PNDM_NPY_F32:
    case PNDM_NPY_I32:
    case PNDM_NPY_U32: return 4;
    case PNDM_NPY_F64:
    case PNDM_NPY_I64: return 8;
    case PNDM_NPY_U8: return 1;
    }
    return 0;
}

/* find 'key' in the header dict and return a pointer just after the ':' */
static const char *npy_find_key(const char *h, size_t n, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= n; i++) {
        if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 && h[i + 1 + kl] == h[i]) {
            const char *p = h + i + kl + 2;
            const char *end = h + n;
            while (p < end && isspace((unsigned char)*p)) p++;
            if (p < end && *p == ':') {
                p++;
                while (p < end && isspace((unsigned char)*p)) p++;
                return p < end ? p : NULL;
            }
        }
    }
    return NULL;
}

static void bswap_inplace(unsigned char *p, size_t count, size_t itemsize) {
    for (size_t i = 0; i < count; i++, p += itemsize)
        for (size_t a = 0, b = itemsize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

pndm_status pndm_npy_parse(const void *buf, size_t size, const char *source, pndm_npy *out, pndm_error *err) {
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    if (!source) source = "<npy>";
    if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return core_fail(err, PNDM_ERR_INPUT, "%s: not a .npy file (bad magic)", source);
    int major = b[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)b[8] | ((size_t)b[9] << 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) return core_fail(err, PNDM_ERR_INPUT, "%s: truncated .npy header", source);
        hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
        hstart = 12;
    } else {
        return core_fail(err, PNDM_ERR_INPUT, "%s: unsupported .npy version %d", source, major);
    }
    if (hlen > size - hstart)
        return core_fail(err, PNDM_ERR_INPUT, "%s: .npy header length %zu exceeds file size %zu", source, hlen, size);
    const char *h = (const char *)b + hstart;

    const char *d = npy_find_key(h, hlen, "descr");
    if (!d || (*d != '\'' && *d != '"'))
        return core_fail(err, PNDM_ERR_INPUT, "%s: .npy header has no 'descr'", source);
    char q = *d++;
    char descr[16];
    size_t dl = 0;
    while (d < h + hlen && *d != q && dl < sizeof descr - 1) descr[dl++] = *d++;
    descr[dl] = 0;
    if (d >= h + hlen || *d != q) return core_fail(err, PNDM_ERR_INPUT, "%s: .npy 'descr' malformed", source);
    int swap = 0;
    const char *ty = descr;
    if (descr[0] == '<' || descr[0] == '|' || descr[0] == '=')
        ty = descr + 1;
    else if (descr[0] == '>') {
        ty = descr + 1;
        swap = 1;
    }
    pndm_npy_dtype dt;
    if (!strcmp(ty, "f4"))
        dt = PNDM_NPY_F32;
    else if (!strcmp(ty, "f8"))
        dt = PNDM_NPY_F64;
    else if (!strcmp(ty, "i8"))
        dt = PNDM_NPY_I64;
    else if (!strcmp(ty, "i4"))
        dt = PNDM_NPY_I32;
    else if (!strcmp(ty, "u1") || !strcmp(ty, "b1"))
        dt = PNDM_NPY_U8;
    else if (!strcmp(ty, "u4"))
        dt = PNDM_NPY_U32;
    else
        return core_fail(err, PNDM_ERR_INPUT, "%s: unsupported .npy dtype '%s'", source, descr);

    const char *fo = npy_find_key(h, hlen, "fortran_order");
    int fortran = 0;
    if (fo) {
        size_t rem = (size_t)(h + hlen - fo);
        if (rem >= 4 && !memcmp(fo, "True", 4))
            fortran = 1;
        else if (rem >= 5 && !memcmp(fo, "False", 5))
            fortran = 0;
        else
            return core_fail(err, PNDM_ERR_INPUT, "%s: .npy 'fortran_order' malformed", source);
    }
    const char *sp = npy_find_key(h, hlen, "shape");
    if (!sp || *sp != '(') return core_fail(err, PNDM_ERR_INPUT, "%s: .npy header has no 'shape'", source);
    sp++;
    int ndim = 0;
    size_t count = 1;
    const char *hend = h + hlen;
    for (;;) {
        while (sp < hend && (isspace((unsigned char)*sp) || *sp == ',')) sp++;
        if (sp >= hend) return core_fail(err, PNDM_ERR_INPUT, "%s: .npy 'shape' malformed", source);
        if (*sp == ')') break;
        if (!isdigit((unsigned char)*sp))
            return core_fail(err, PNDM_ERR_INPUT, "%s: .npy 'shape' has a non-integer or negative dimension", source);
        uint64_t v = 0;
        while (sp < hend && isdigit((unsigned char)*sp)) {
            if (v > (UINT64_MAX - 9) / 10)
                return core_fail(err, PNDM_ERR_INPUT, "%s: .npy dimension too large", source);
            v = v * 10 + (uint64_t)(*sp++ - '0');
            if (v > (uint64_t)INT64_MAX) return core_fail(err, PNDM_ERR_INPUT, "%s: .npy dimension too large", source);
        }
        while (sp < hend && (*sp == 'L')) sp++;
        if (ndim >= 8) return core_fail(err, PNDM_ERR_INPUT, "%s: .npy has more than 8 dimensions", source);
        out->shape[ndim++] = (int64_t)v;
        if (!core_mul_size(count, (size_t)v, &count))
            return core_fail(err, PNDM_ERR_INPUT, "%s: .npy shape overflows", source);
    }
    size_t isz = npy_itemsize(dt), nbytes;
    if (!core_mul_size(count, isz, &nbytes)) return core_fail(err, PNDM_ERR_INPUT, "%s: .npy shape overflows", source);
    size_t dstart = hstart + hlen;
    if (size - dstart != nbytes)
        return core_fail(err, PNDM_ERR_INPUT, "%s: .npy data is %zu bytes, shape needs %zu", source, size - dstart,
                         nbytes);
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data) return core_fail(err, PNDM_ERR_NOMEM, "%s: cannot allocate %zu bytes", source, nbytes);
    memcpy(data, b + dstart, nbytes);
    if (swap && isz > 1) bswap_inplace(data, count, isz);
    if (fortran && ndim > 1) {
        /* transpose Fortran order to C order */
        unsigned char *c = malloc(nbytes ? nbytes : 1);
        if (!c) {
            free(data);
            return core_fail(err, PNDM_ERR_NOMEM, "%s: cannot allocate %zu bytes", source, nbytes);
        }
        int64_t idx[8] = {0};
        for (size_t i = 0; i < count; i++) { /* i: C-order linear index; idx: its multi-index */
            size_t fi = 0, stride = 1;
            for (int k = 0; k < ndim; k++) {
                fi += (size_t)idx[k] * stride;
                stride *= (size_t)out->shape[k];
            }
            memcpy(c + i * isz, (unsigned char *)data + fi * isz, isz);
            for (int k = ndim - 1; k >= 0; k--) {
                if (++idx[k] < out->shape[k]) break;
                idx[k] = 0;
            }
        }
        free(data);
        data = c;
    }
    out->dtype = dt;
    out->ndim = ndim;
    out->count = count;
    out->data = data;
    return PNDM_OK;
}

pndm_status pndm_npy_load(const char *path, pndm_npy *out, pndm_error *err) {
    char *buf;
    size_t size;
    memset(out, 0, sizeof *out);
    pndm_status s = pndm_read_file(path, 0, &buf, &size, err);
    if (s) return s;
    s = pndm_npy_parse(buf, size, path, out, err);
    free(buf);
    return s;
}

void pndm_npy_free(pndm_npy *a) {
    if (a) {
        free(a->data);
        memset(a, 0, sizeof *a);
    }
}

pndm_status pndm_npy_to_f32(const pndm_npy *a, float **out, pndm_error *err) {
    float *f = malloc((a->count ? a->count : 1) * sizeof *f);
    if (!f) return core_fail(err, PNDM_ERR_NOMEM, "cannot allocate %zu floats", a->count);
    for (size_t i = 0; i < a->count; i++) {
        switch (a->dtype) {
        case PNDM_NPY_F32: f[i] = ((const float *)a->data)[i]; break;
        case PNDM_NPY_F64: f[i] = (float)((const double *)a->data)[i]; break;
        case PNDM_NPY_I64: f[i] = (float)((const int64_t *)a->data)[i]; break;
        case PNDM_NPY_I32: f[i] = (float)((const int32_t *)a->data)[i]; break;
        case PNDM_NPY_U8: f[i] = (float)((const uint8_t *)a->data)[i]; break;
        case PNDM_NPY_U32: f[i] = (float)((const uint32_t *)a->data)[i]; break;
        }
    }
    *out = f;
    return PNDM_OK;
}

pndm_status pndm_npy_encode_f32(const float *data, int ndim, const int64_t *shape, void **out, size_t *out_size,
                                pndm_error *err) {
    *out = NULL;
    *out_size = 0;
    if (ndim < 0 || ndim > 8) return core_fail(err, PNDM_ERR_USAGE, "npy: bad ndim %d", ndim);
    char dict[256];
    int pos = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !core_mul_size(count, (size_t)shape[i], &count))
            return core_fail(err, PNDM_ERR_USAGE, "npy: bad shape");
        pos += snprintf(dict + pos, sizeof dict - (size_t)pos, "%lld%s", (long long)shape[i],
                        (ndim == 1 || i < ndim - 1) ? ", " : "");
    }
    pos += snprintf(dict + pos, sizeof dict - (size_t)pos, "), }");
    /* pad so that 10 + header length is a multiple of 64, header ends with '\n' */
    size_t hl = (size_t)pos + 1;
    size_t total_h = ((10 + hl + 63) / 64) * 64;
    size_t hlen = total_h - 10;
    size_t nbytes;
    if (!core_mul_size(count, 4, &nbytes)) return core_fail(err, PNDM_ERR_USAGE, "npy: shape overflows");
    unsigned char *b = malloc(total_h + nbytes);
    if (!b) return core_fail(err, PNDM_ERR_NOMEM, "npy: cannot allocate %zu bytes", total_h + nbytes);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hlen & 0xff);
    b[9] = (unsigned char)(hlen >> 8);
    memcpy(b + 10, dict, (size_t)pos);
    memset(b + 10 + pos, ' ', hlen - (size_t)pos - 1);
    b[total_h - 1] = '\n';
    if (nbytes) memcpy(b + total_h, data, nbytes);
    *out = b;
    *out_size = total_h + nbytes;
    return PNDM_OK;
}

pndm_status pndm_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape, pndm_error *err) {
    void *buf;
    size_t n;
    pndm_status s = pndm_npy_encode_f32(data, ndim, shape, &buf, &n, err);
    if (s) return s;
    s = pndm_write_file_atomic(path, buf, n, err);
    free(buf);
    return s;
}
