/* config_internal — what config.c (parsing, overrides, validation) and
 * config_schema.c (the schema table, defaults, emission, the reference and
 * the resume diff) share. Private to trainer/config*.c and the unit and fuzz
 * tests; nothing else includes it.
 *
 * The schema: one key_spec row per key of ms_config. Defaults, parsing,
 * `--set`, validation, emission, the Markdown reference and the resume diff
 * all walk the same rows, so none of them can drift from the others.
 */
#ifndef MS_CONFIG_INTERNAL_H
#define MS_CONFIG_INTERNAL_H

#include <stddef.h>

#include "config.h"

typedef enum {
  K_STR,    /* char[size], any scalar */
  K_INT,    /* int, ranged */
  K_U64,    /* uint64_t, full range */
  K_DBL,    /* double, finite, ranged */
  K_BOOL,   /* int 0/1, only `true` / `false` */
  K_ENUM,   /* char[size] holding one of `allowed` */
  K_ENUMI,  /* an int-sized enum holding the index into `allowed` */
  K_LAYERS, /* model.layers: items follow cfg_layer_keys */
  K_DIMS,   /* ms_dims: a list of 0..MS_MAX_DIMS integers in [min, max] */
  K_FLOATS  /* ms_floats: a list of 0..MS_NORM_MAX finite numbers in [min, max] */
} key_type;

enum {
  F_MIN_EXCL = 1, /* the minimum itself is not allowed */
  F_MAX_EXCL = 2, /* the maximum itself is not allowed */
  F_REQUIRED = 4  /* a string that must not be empty */
};

typedef struct {
  const char *path; /* "optim.lr"; for layer items just "units" */
  key_type type;
  size_t off, size;
  const char *def_s; /* default of K_STR / K_ENUM */
  double def_n;      /* default of the numeric types */
  double min, max;
  unsigned flags;
  /* 1: a run may resume from a checkpoint made with another value (it
   * changes neither the parameter layout nor the data or the sample stream);
   * 0: config_resume_diff() refuses a change. */
  int resume_safe;
  const char *const *allowed; /* K_ENUM / K_ENUMI values, NULL-terminated */
  const char *doc;
} key_spec;

extern const key_spec cfg_keys[];
extern const size_t cfg_n_keys;
extern const key_spec cfg_layer_keys[]; /* items of model.layers */
extern const size_t cfg_n_layer_keys;
extern const char *const cfg_layer_key_names[];
extern const char *const cfg_sections[];
extern const size_t cfg_n_sections;

/* Sizes known at compile time, for arrays indexed by row (checked in
 * config_schema.c). */
#define CFG_MAX_KEYS 64
#define CFG_N_LAYER_KEYS 3
#define CFG_N_SECTIONS 9

/* Rows of cfg_layer_keys. */
enum { LAYER_TYPE = 0, LAYER_UNITS = 1, LAYER_ACTIVATION = 2 };

#define WHY_MAX 512 /* one "expected ..., found ..." clause */

/* ---- growable text --------------------------------------------------------- */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} sbuf;

void cfg_sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- formatting shared by messages, emission and the reference ------------ */

/* The part after the last dot: "lr" of "optim.lr". */
const char *cfg_leaf(const char *path);

/* 1 for the plain YAML null words: nothing, ~, null, Null, NULL. */
int cfg_is_null_word(const char *s, size_t n);

/* The shortest %g form, from 6 digits up, that reads back as exactly v. */
void cfg_fmt_double(char *out, size_t n, double v);

/* "an integer in [1, 100000]", "a number > 0", "a number in [0, 1)". */
void cfg_range_desc(const key_spec *k, char *out, size_t n);

int cfg_in_range(const key_spec *k, double v);

/* "constant, cosine" */
void cfg_allowed_list(const key_spec *k, char *out, size_t n);

/* @return the index of s (n bytes) in k->allowed, or -1. */
int cfg_find_allowed(const key_spec *k, const char *s, size_t n);

/* @return the allowed value with index v, or "invalid". */
const char *cfg_enum_name(const key_spec *k, int v);

/* Appends s (at most size bytes) so that it reads back as itself: plain when
 * that is safe, double-quoted with escapes otherwise. */
void cfg_emit_string(sbuf *b, const char *s, size_t size);

/* Appends "[28, 28]" (or "[]"). */
void cfg_emit_dims(sbuf *b, const ms_dims *d);

/* Appends "[0.5, 0.25]" (or "[]"), each number in the shortest form that
 * reads back as the same float. */
void cfg_emit_floats(sbuf *b, const ms_floats *f);

#endif
