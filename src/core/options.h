/* Table-driven reading of a JSON config object (config.json, scheduler_config.json) into a
 * struct: one row per key says its type, range or accepted names, default and destination.
 *
 *     static const core_opt TABLE[] = {
 *         CORE_OPT_INT_ROW("in_channels", offsetof(cfg, in_channels), 0, 1, 16384, 3),
 *         CORE_OPT_ENUM_ROW("act_fn", offsetof(cfg, act), 0, 0, ACTS),
 *         ...
 *     };
 *     core_opt_reader r = {source, CORE_OPT_STYLE_OPTION, "UNet2DModel", err};
 *     st = core_opts_read(&r, root, TABLE, N, &cfg);      // r.seen: which rows were given
 *
 * core_opts_read refuses a key given twice (any key), then reads the rows in table order: an
 * absent key takes the row's default, a present one must have the row's type and range, else
 * one message naming the source and the key (PNDM_ERR_MODEL). Keys the table does not know are
 * left to the caller (core_opt_find tells them apart: refuse them, or report them as ignored).
 *
 * Two message styles, one per reader (each config file keeps the wording its tests and users
 * know):
 *   CORE_OPT_STYLE_KEY     <source>: key "<key>": expected an integer, got a string
 *                          <source>: key "<key>": must be in 1..1000000 (got 0)
 *                          <source>: key "<key>": unsupported value "x" (<owner> supports a, b)
 *                          <source>: key "<key>": appears more than once
 *   CORE_OPT_STYLE_OPTION  <source>: option '<key>' must be an integer in [1, 64] (got 0)
 *                          <source>: duplicate key '<key>' */
#ifndef PNDM_CORE_OPTIONS_H
#define PNDM_CORE_OPTIONS_H

#include "json.h"

#include <stdint.h>

typedef enum core_opt_type {
    CORE_OPT_INT,    /* integer-valued number in [lo, hi] -> int (NULLABLE: null -> 0) */
    CORE_OPT_NUM,    /* finite number in the range (flags: open ends) -> double */
    CORE_OPT_BOOL,   /* true / false -> int 0 / 1 */
    CORE_OPT_ENUM,   /* one of names[] -> int index (NULLABLE: null -> -1) */
    CORE_OPT_STRING, /* a string -> const char * into the cJSON tree (default and null: NULL) */
    CORE_OPT_CUSTOM  /* parse() does it (also called with v = NULL when the key is absent) */
} core_opt_type;

#define CORE_OPT_NULLABLE 1u /* null is accepted */
#define CORE_OPT_LO_OPEN 2u  /* NUM: lo < x (else lo <= x) */
#define CORE_OPT_HI_OPEN 4u  /* NUM: x < hi (else x <= hi) */

typedef enum { CORE_OPT_STYLE_KEY, CORE_OPT_STYLE_OPTION } core_opt_style;

typedef struct core_opt_reader {
    const char *source; /* names the file in messages */
    core_opt_style style;
    const char *owner; /* what reads the config, for "unsupported value" messages ("PNDMScheduler") */
    pndm_error *err;
    uint64_t seen; /* out: bit i set when row i's key was given */
} core_opt_reader;

typedef struct core_opt core_opt;
typedef pndm_status (*core_opt_parse_fn)(core_opt_reader *r, const core_opt *o, const cJSON *v, void *dst);

struct core_opt {
    const char *key;
    core_opt_type type;
    size_t offset;            /* destination in the struct (int, double or const char *) */
    unsigned flags;           /* CORE_OPT_NULLABLE, CORE_OPT_LO_OPEN, CORE_OPT_HI_OPEN */
    double lo, hi;            /* INT, NUM: the accepted range */
    double def;               /* absent: INT, NUM, BOOL value; ENUM index (-1: null) */
    const char *const *names; /* ENUM: the accepted values, NULL-terminated */
    const char *what;         /* a valid value in words, for messages (NULL: from type and range) */
    core_opt_parse_fn parse;  /* CUSTOM */
};

/* Rows (designated initializers: the fields a type does not use stay zero). */
#define CORE_OPT_INT_ROW(k, off, fl, lo_, hi_, def_)                                                                   \
    { .key = (k), .type = CORE_OPT_INT, .offset = (off), .flags = (fl), .lo = (lo_), .hi = (hi_), .def = (def_) }
#define CORE_OPT_NUM_ROW(k, off, fl, lo_, hi_, def_, what_)                                                            \
    {                                                                                                                  \
        .key = (k), .type = CORE_OPT_NUM, .offset = (off), .flags = (fl), .lo = (lo_), .hi = (hi_), .def = (def_),     \
        .what = (what_)                                                                                                \
    }
#define CORE_OPT_BOOL_ROW(k, off, def_)                                                                                \
    { .key = (k), .type = CORE_OPT_BOOL, .offset = (off), .def = (def_) }
#define CORE_OPT_ENUM_ROW(k, off, fl, def_, names_)                                                                    \
    { .key = (k), .type = CORE_OPT_ENUM, .offset = (off), .flags = (fl), .def = (def_), .names = (names_) }
#define CORE_OPT_STRING_ROW(k, off, fl)                                                                                \
    { .key = (k), .type = CORE_OPT_STRING, .offset = (off), .flags = (fl) }
#define CORE_OPT_CUSTOM_ROW(k, fn)                                                                                     \
    { .key = (k), .type = CORE_OPT_CUSTOM, .parse = (fn) }

/* Read `n` (<= 64) rows of `table` from `obj` into `dst` (see the top of this file). */
pndm_status core_opts_read(core_opt_reader *r, const cJSON *obj, const core_opt *table, int n, void *dst);

/* Index of the row for `key`, or -1. */
int core_opt_find(const core_opt *table, int n, const char *key);

/* The standard refusal for `key` holding `v`, in the reader's style: "must be <what> (got
 * <value>)" (OPTION) or "expected <what>, got <type>" (KEY). For CUSTOM rows. */
pndm_status core_opt_bad(const core_opt_reader *r, const char *key, const cJSON *v, const char *what);

/* ENUM logic with an explicit list (CUSTOM rows whose accepted values depend on other keys):
 * *out = index of v's string in names (NULL-terminated). */
pndm_status core_opt_enum(const core_opt_reader *r, const char *key, const cJSON *v, const char *const *names,
                          int *out);

#endif
