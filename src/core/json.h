/* The one set of small JSON helpers (cJSON) that every config reader uses: parse a whole text
 * into an object, name a value's type, render a value briefly, read a number as an integer.
 * Table-driven option reading on top of these is in options.h. */
#ifndef PNDM_CORE_JSON_H
#define PNDM_CORE_JSON_H

#include "pndm.h"

#include <cjson/cJSON.h>
#include <stddef.h>

/* Parse `len` bytes as one JSON object; only whitespace may follow it. Failures
 * (PNDM_ERR_MODEL): "<source>: <what> is not valid JSON (error at byte N)", "... (unexpected
 * data at byte N)", "<source>: <what> must be a JSON object, got an array". *out (free with
 * cJSON_Delete) only on success. */
pndm_status core_json_parse_object(const char *json, size_t len, const char *source, const char *what, cJSON **out,
                                   pndm_error *err);

/* "null", "a boolean", "a number", "a string", "an array", "an object". */
const char *core_json_type(const cJSON *v);

/* Short rendering for messages: the value's JSON text, cut to ~40 characters ("nothing" for NULL). */
void core_json_repr(const cJSON *v, char *buf, size_t size);

/* A finite integer-valued number in [lo, hi]? Then 1 and the value in *out. */
int core_json_int(const cJSON *v, double lo, double hi, long long *out);

/* The first key of `obj` that appears twice, or NULL. */
const char *core_json_duplicate_key(const cJSON *obj);

#endif
