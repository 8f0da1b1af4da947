/* record.h - the generation record: one ordered list of key = value entries that identifies how
 * an output was made (model by content, sampler, steps, seeds, scheduler settings, ...). It is
 * built once per run and rendered three ways that always carry the same entries:
 *   - the PNG "parameters" text chunk:  key=value; key=value; ...
 *   - the .json sidecar of a .npy output and the "record" object of --json: {"key": value, ...}
 *   - read back (--reproduce, --info) from either form into key/value strings.
 * A feature that changes the output adds its entries where the record is built (pndm-gen's
 * stage_load: build_record) and, to be reproducible, one row in pndm-gen's REC_KEYS table that
 * maps the key back to the command-line option that sets it. */
#ifndef PNDM_CLI_RECORD_H
#define PNDM_CLI_RECORD_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    REC_STR,  /* a string */
    REC_NUM,  /* a number, kept as its exact decimal text (64-bit seeds survive JSON) */
    REC_BOOL, /* 0 / 1 in the PNG text, false / true in JSON */
    REC_JSON  /* a JSON value (object), compact text */
} rec_kind;

/* Which --metadata level writes an entry: every level but none, or full only (what depends on
 * the machine or the checkout: path, version, kernel path). */
typedef enum { REC_MINIMAL = 0, REC_FULL = 1 } rec_level;
typedef enum { META_NONE = 0, META_MINIMAL = 1, META_FULL = 2 } rec_metadata;

typedef struct {
    char *key, *value;
    rec_kind kind;
    rec_level level;
} rec_entry;

typedef struct gen_record {
    rec_entry *e;
    int n, cap;
} gen_record;

void rec_free(gen_record *r);
/* Set (or replace, keeping its place) an entry; the value is printf-formatted. 0 on success,
 * -1 out of memory. */
int rec_set(gen_record *r, const char *key, rec_kind kind, rec_level level, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void rec_remove(gen_record *r, const char *key);
const char *rec_get(const gen_record *r, const char *key);

/* "key=value; key=value" of the entries the level writes (malloc'ed; NULL out of memory). */
char *rec_to_text(const gen_record *r, rec_metadata level);
/* A JSON object of the entries the level writes (NULL out of memory). */
cJSON *rec_to_json(const gen_record *r, rec_metadata level);

/* Read a record back: from the PNG text form (values may hold "; " inside quotes or brackets)
 * or from a JSON object (numbers keep their text, booleans become 0/1, objects compact JSON).
 * 0 on success; -1 with a message in err (malformed text, a key given twice). */
int rec_from_text(const char *text, gen_record *out, char *err, size_t err_size);
int rec_from_json(const cJSON *obj, gen_record *out, char *err, size_t err_size);
/* The same from JSON text, numbers exactly as written (64-bit seeds beyond a double's 2^53). */
int rec_from_json_text(const char *text, size_t len, gen_record *out, char *err, size_t err_size);

/* The file name part of a path ("a/b/model.safetensors" -> "model.safetensors"; a trailing '/'
 * is ignored: "models/cifar10/" -> "cifar10"), into out. */
void rec_base_name(const char *path, char *out, size_t size);

#endif
