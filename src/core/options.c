/* Table-driven JSON option reader (see options.h). */
#include "options.h"
#include "core.h"

#include <math.h>
#include <string.h>

int core_opt_find(const core_opt *table, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (key && strcmp(table[i].key, key) == 0) return i;
    return -1;
}

pndm_status core_opt_bad(const core_opt_reader *r, const char *key, const cJSON *v, const char *what) {
    if (r->style == CORE_OPT_STYLE_OPTION) {
        char shown[64];
        core_json_repr(v, shown, sizeof shown);
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: option '%s' must be %s (got %s)", r->source, key, what, shown);
    }
    return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"%s\": expected %s, got %s", r->source, key, what,
                     core_json_type(v));
}

/* "a, b, c" (KEY style) or "one of 'a', 'b', 'c'" (OPTION style) */
static void list_names(const core_opt_reader *r, const char *const *names, int nullable, char *buf, size_t size) {
    int option = r->style == CORE_OPT_STYLE_OPTION;
    snprintf(buf, size, "%s", option ? "one of" : "");
    for (const char *const *n = names; *n; n++) {
        size_t l = strlen(buf);
        if (option)
            snprintf(buf + l, size - l, "%s '%s'", n == names ? "" : ",", *n);
        else
            snprintf(buf + l, size - l, "%s%s", n == names ? "" : ", ", *n);
    }
    if (nullable && option) {
        size_t l = strlen(buf);
        snprintf(buf + l, size - l, ", null");
    }
}

static pndm_status read_enum(const core_opt_reader *r, const char *key, const cJSON *v, const char *const *names,
                             int nullable, int *out) {
    if (nullable && cJSON_IsNull(v)) {
        *out = -1;
        return PNDM_OK;
    }
    if (!cJSON_IsString(v)) return core_opt_bad(r, key, v, nullable ? "a string or null" : "a string");
    for (int i = 0; names[i]; i++)
        if (strcmp(v->valuestring, names[i]) == 0) {
            *out = i;
            return PNDM_OK;
        }
    char list[256];
    list_names(r, names, nullable, list, sizeof list);
    if (r->style == CORE_OPT_STYLE_KEY)
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"%s\": unsupported value \"%.100s\" (%s supports %s)",
                         r->source, key, v->valuestring, r->owner ? r->owner : "this reader", list);
    return core_opt_bad(r, key, v, list);
}

pndm_status core_opt_enum(const core_opt_reader *r, const char *key, const cJSON *v, const char *const *names,
                          int *out) {
    return read_enum(r, key, v, names, 0, out);
}

static pndm_status read_int(const core_opt_reader *r, const core_opt *o, const cJSON *v, int *out) {
    const int nullable = (o->flags & CORE_OPT_NULLABLE) != 0;
    if (nullable && cJSON_IsNull(v)) {
        *out = 0;
        return PNDM_OK;
    }
    long long x;
    if (core_json_int(v, o->lo, o->hi, &x)) {
        *out = (int)x;
        return PNDM_OK;
    }
    if (r->style == CORE_OPT_STYLE_OPTION) {
        char what[96];
        snprintf(what, sizeof what, "%san integer in [%.0f, %.0f]", nullable ? "null or " : "", o->lo, o->hi);
        return core_opt_bad(r, o->key, v, o->what ? o->what : what);
    }
    if (!cJSON_IsNumber(v)) return core_opt_bad(r, o->key, v, nullable ? "null or an integer" : "an integer");
    const double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"%s\": expected an integer, got %g", r->source, o->key, d);
    return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"%s\": must be in %.0f..%.0f (got %.17g)", r->source, o->key,
                     o->lo, o->hi, d);
}

static pndm_status read_num(const core_opt_reader *r, const core_opt *o, const cJSON *v, double *out) {
    const char *what = o->what ? o->what : "a number";
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return core_opt_bad(r, o->key, v, what);
    const double d = v->valuedouble;
    const int lo_ok = (o->flags & CORE_OPT_LO_OPEN) ? d > o->lo : d >= o->lo;
    const int hi_ok = (o->flags & CORE_OPT_HI_OPEN) ? d < o->hi : d <= o->hi;
    if (!lo_ok || !hi_ok) {
        if (r->style == CORE_OPT_STYLE_OPTION) return core_opt_bad(r, o->key, v, what);
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"%s\": must be %s (got %.17g)", r->source, o->key, what, d);
    }
    *out = d;
    return PNDM_OK;
}

pndm_status core_opts_read(core_opt_reader *r, const cJSON *obj, const core_opt *table, int n, void *dst) {
    CORE_ASSERT(n >= 0 && n <= 64);
    r->seen = 0;
    const char *dup = core_json_duplicate_key(obj);
    if (dup) {
        if (r->style == CORE_OPT_STYLE_OPTION)
            return core_fail(r->err, PNDM_ERR_MODEL, "%s: duplicate key '%s'", r->source, dup);
        return core_fail(r->err, PNDM_ERR_MODEL, "%s: key \"%s\": appears more than once", r->source, dup);
    }
    char *base = dst;
    for (int i = 0; i < n; i++) {
        const core_opt *o = &table[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, o->key);
        if (v) r->seen |= UINT64_C(1) << i;
        pndm_status st = PNDM_OK;
        void *p = base + o->offset;
        switch (o->type) {
        case CORE_OPT_INT:
            if (!v)
                *(int *)p = (int)o->def;
            else
                st = read_int(r, o, v, p);
            break;
        case CORE_OPT_NUM:
            if (!v)
                *(double *)p = o->def;
            else
                st = read_num(r, o, v, p);
            break;
        case CORE_OPT_BOOL:
            if (!v)
                *(int *)p = o->def != 0;
            else if (cJSON_IsBool(v))
                *(int *)p = cJSON_IsTrue(v) ? 1 : 0;
            else
                st = core_opt_bad(r, o->key, v, "true or false");
            break;
        case CORE_OPT_ENUM:
            if (!v)
                *(int *)p = (int)o->def;
            else
                st = read_enum(r, o->key, v, o->names, (o->flags & CORE_OPT_NULLABLE) != 0, p);
            break;
        case CORE_OPT_STRING:
            if (!v || ((o->flags & CORE_OPT_NULLABLE) && cJSON_IsNull(v)))
                *(const char **)p = NULL;
            else if (cJSON_IsString(v))
                *(const char **)p = v->valuestring;
            else
                st = core_opt_bad(r, o->key, v, (o->flags & CORE_OPT_NULLABLE) ? "a string or null" : "a string");
            break;
        case CORE_OPT_CUSTOM: st = o->parse(r, o, v, dst); break;
        }
        if (st) return st;
    }
    return PNDM_OK;
}
