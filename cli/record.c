/* record.c - see record.h. */
#define _POSIX_C_SOURCE 200809L
#include "record.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rec_free(gen_record *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->e[i].key);
        free(r->e[i].value);
    }
    free(r->e);
    memset(r, 0, sizeof *r);
}

static int rec_find(const gen_record *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->e[i].key, key)) return i;
    return -1;
}

const char *rec_get(const gen_record *r, const char *key) {
    int i = rec_find(r, key);
    return i < 0 ? NULL : r->e[i].value;
}

static int rec_put(gen_record *r, const char *key, rec_kind kind, rec_level level, char *value) {
    int i = rec_find(r, key);
    if (i >= 0) {
        free(r->e[i].value);
        r->e[i].value = value;
        r->e[i].kind = kind;
        r->e[i].level = level;
        return 0;
    }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 32;
        rec_entry *e = realloc(r->e, (size_t)cap * sizeof *e);
        if (!e) return free(value), -1;
        r->e = e;
        r->cap = cap;
    }
    char *k = strdup(key);
    if (!k) return free(value), -1;
    r->e[r->n++] = (rec_entry){k, value, kind, level};
    return 0;
}

int rec_set(gen_record *r, const char *key, rec_kind kind, rec_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *v = len < 0 ? NULL : malloc((size_t)len + 1);
    if (v) vsnprintf(v, (size_t)len + 1, fmt, ap2);
    va_end(ap2);
    if (!v) return -1;
    return rec_put(r, key, kind, level, v);
}

void rec_remove(gen_record *r, const char *key) {
    int i = rec_find(r, key);
    if (i < 0) return;
    free(r->e[i].key);
    free(r->e[i].value);
    memmove(r->e + i, r->e + i + 1, (size_t)(r->n - i - 1) * sizeof *r->e);
    r->n--;
}

static int writes(const rec_entry *e, rec_metadata level) {
    return level == META_FULL || (level == META_MINIMAL && e->level == REC_MINIMAL);
}

char *rec_to_text(const gen_record *r, rec_metadata level) {
    size_t len = 1;
    for (int i = 0; i < r->n; i++) len += strlen(r->e[i].key) + strlen(r->e[i].value) + 3;
    char *s = malloc(len), *o = s;
    if (!s) return NULL;
    *o = 0;
    for (int i = 0; i < r->n; i++) {
        const rec_entry *e = &r->e[i];
        if (!writes(e, level)) continue;
        o += sprintf(o, "%s%s=%s", o == s ? "" : "; ", e->key, e->value);
    }
    return s;
}

cJSON *rec_to_json(const gen_record *r, rec_metadata level) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    for (int i = 0; i < r->n; i++) {
        const rec_entry *e = &r->e[i];
        if (!writes(e, level)) continue;
        cJSON *v = NULL;
        switch (e->kind) {
        case REC_STR: v = cJSON_CreateString(e->value); break;
        case REC_NUM: v = cJSON_CreateRaw(e->value); break;
        case REC_BOOL: v = cJSON_CreateBool(strcmp(e->value, "0") && strcmp(e->value, "false")); break;
        case REC_JSON: v = cJSON_Parse(e->value); break;
        }
        if (!v) v = cJSON_CreateString(e->value);
        if (!v) return cJSON_Delete(j), NULL;
        cJSON_AddItemToObject(j, e->key, v);
    }
    return j;
}

static int set_err(char *err, size_t size, const char *fmt, const char *a, const char *b) {
    snprintf(err, size, fmt, a, b);
    return -1;
}

int rec_from_text(const char *text, gen_record *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\n' || *p == '\t') p++;
        if (!*p) break;
        const char *eq = p;
        while (*eq && *eq != '=' && *eq != ';') eq++;
        if (*eq != '=' || eq == p) {
            rec_free(out);
            return set_err(err, err_size, "malformed entry '%.40s%s' (expected key=value)", p, "");
        }
        /* the value runs to the next "; " outside quotes and brackets */
        const char *v = eq + 1, *q = v;
        int depth = 0, in_str = 0;
        for (; *q; q++) {
            if (in_str) {
                if (*q == '\\' && q[1])
                    q++;
                else if (*q == '"')
                    in_str = 0;
            } else if (*q == '"') {
                in_str = 1;
            } else if (*q == '{' || *q == '[' || *q == '(') {
                depth++;
            } else if ((*q == '}' || *q == ']' || *q == ')') && depth > 0) {
                depth--;
            } else if (*q == ';' && depth == 0) {
                break;
            }
        }
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(eq - p) < 127 ? (int)(eq - p) : 127, p);
        size_t vl = (size_t)(q - v);
        while (vl && v[vl - 1] == ' ') vl--;
        char *value = malloc(vl + 1);
        if (!value) return rec_free(out), set_err(err, err_size, "out of memory%s%s", "", "");
        memcpy(value, v, vl);
        value[vl] = 0;
        if (rec_find(out, key) >= 0) {
            free(value);
            rec_free(out);
            return set_err(err, err_size, "key '%s' given twice%s", key, "");
        }
        if (rec_put(out, key, value[0] == '{' ? REC_JSON : REC_STR, REC_MINIMAL, value))
            return rec_free(out), set_err(err, err_size, "out of memory%s%s", "", "");
        p = *q ? q + 1 : q;
    }
    return 0;
}

int rec_from_json(const cJSON *obj, gen_record *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(obj)) return set_err(err, err_size, "the record is not a JSON object%s%s", "", "");
    for (const cJSON *c = obj->child; c; c = c->next) {
        char *value = NULL;
        rec_kind kind = REC_STR;
        if (cJSON_IsString(c)) {
            value = strdup(c->valuestring);
        } else if (cJSON_IsBool(c)) {
            value = strdup(cJSON_IsTrue(c) ? "1" : "0");
            kind = REC_BOOL;
        } else if (cJSON_IsNumber(c) || cJSON_IsRaw(c)) {
            /* cJSON keeps doubles only: integers beyond 2^53 (64-bit seeds) are taken from the
             * text by rec_from_json_text; here the shortest exact form */
            char buf[64];
            double d = c->valuedouble;
            if (cJSON_IsRaw(c))
                snprintf(buf, sizeof buf, "%s", c->valuestring);
            else if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d)
                snprintf(buf, sizeof buf, "%lld", (long long)d);
            else
                snprintf(buf, sizeof buf, "%.17g", d);
            value = strdup(buf);
            kind = REC_NUM;
        } else if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            value = cJSON_PrintUnformatted(c);
            kind = REC_JSON;
        } else {
            value = strdup("");
        }
        if (!value) return rec_free(out), set_err(err, err_size, "out of memory%s%s", "", "");
        if (!c->string || rec_find(out, c->string) >= 0) {
            free(value);
            rec_free(out);
            return set_err(err, err_size, "key '%s' given twice%s", c->string ? c->string : "", "");
        }
        if (rec_put(out, c->string, kind, REC_MINIMAL, value))
            return rec_free(out), set_err(err, err_size, "out of memory%s%s", "", "");
    }
    return 0;
}

void rec_base_name(const char *path, char *out, size_t size) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(out, size, "%.*s", (int)(len - start), path + start);
}

/* The text of each top-level number of a JSON object, to replace the double cJSON made of it. */
static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static const char *skip_string(const char *p, const char *end) { /* p at the opening quote */
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\') p++;
    return p < end ? p + 1 : end;
}

int rec_from_json_text(const char *text, size_t len, gen_record *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return set_err(err, err_size, "not a JSON object%s%s", "", "");
    }
    int rc = rec_from_json(j, out, err, err_size);
    cJSON_Delete(j);
    if (rc) return rc;
    const char *p = text, *end = text + len;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    for (p++;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"') break;
        const char *k0 = p + 1;
        p = skip_string(p, end);
        const char *k1 = p - 1;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') break;
        p = skip_ws(p + 1, end);
        const char *v0 = p;
        int depth = 0;
        while (p < end) { /* to the ',' or '}' that ends this value */
            if (*p == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                if (depth == 0) break;
                depth--;
            }
            if (*p == ',' && depth == 0) break;
            p++;
        }
        const char *v1 = p;
        while (v1 > v0 && (v1[-1] == ' ' || v1[-1] == '\n' || v1[-1] == '\r' || v1[-1] == '\t')) v1--;
        if (v1 > v0 && (*v0 == '-' || (*v0 >= '0' && *v0 <= '9')) && v1 - v0 < 64 && k1 - k0 < 128) {
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(k1 - k0), k0);
            int i = rec_find(out, key);
            if (i >= 0 && out->e[i].kind == REC_NUM) {
                char *v = malloc((size_t)(v1 - v0) + 1);
                if (v) {
                    memcpy(v, v0, (size_t)(v1 - v0));
                    v[v1 - v0] = 0;
                    free(out->e[i].value);
                    out->e[i].value = v;
                }
            }
        }
        if (p >= end || *p != ',') break;
        p++;
    }
    return 0;
}
