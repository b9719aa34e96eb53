/* config_internal — what the files of the config module share. Private to
 * trainer/config*.c and the unit and fuzz tests; nothing else includes it.
 *
 *   config_schema.c    the schema table, defaults, text helpers
 *   config_emit.c      the resolved-config writer, the reference, the diff
 *   config_value.c     YAML values into fields (file and --set), suggestions,
 *                      the list of problems
 *   config_parse.c     a YAML document into ms_config
 *   config.c           `--set` overrides, reading the file
 *   config_validate.c  bounds, layer rules, cross-field checks
 *
 * The schema: one key_spec row per key of ms_config. Defaults, parsing,
 * `--set`, validation, emission, the Markdown reference and the resume diff
 * all walk the same rows, so none of them can drift from the others.
 *
 * Items of model.layers have their own rows (cfg_layer_keys) with two more
 * columns: the layer types a key belongs to (`uses`) and the types that
 * cannot do without it (`needs`). A key that does not belong to a layer's
 * type must keep its default; the emitter writes a layer's own keys and
 * nothing else (see cfg_layer_key_applies).
 */
#ifndef MS_CONFIG_INTERNAL_H
#define MS_CONFIG_INTERNAL_H

#include <stddef.h>
#include <yaml.h>

#include "config.h"

typedef enum {
  K_STR,    /* char[size], any scalar */
  K_INT,    /* int, ranged */
  K_U64,    /* uint64_t, full range */
  K_DBL,    /* double, finite, ranged */
  K_BOOL,   /* int 0/1, only `true` / `false` */
  K_ENUM,   /* an int-sized C enum whose value v is named allowed[v] (config.h) */
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
  const char *def_s; /* default of K_STR */
  double def_n;      /* default of the numeric types */
  double min, max;
  unsigned flags;
  /* 1: a run may resume from a checkpoint made with another value (it
   * changes neither the parameter layout nor the data or the sample stream);
   * 0: a resume refuses a change (config_diff, CONFIG_DIFF_PINNED). */
  int resume_safe;
  const char *const *allowed; /* K_ENUM: the name of each value, NULL-terminated */
  const char *doc;
  /* Layer items only: bit (1u << ms_layer_type) set for the types the key
   * belongs to (`uses`) and for those where its default, outside the range,
   * means "missing" (`needs`). */
  unsigned uses, needs;
} key_spec;

extern const key_spec cfg_keys[];
extern const size_t cfg_n_keys;
extern const key_spec cfg_layer_keys[]; /* items of model.layers */
extern const size_t cfg_n_layer_keys;
extern const char *const cfg_layer_key_names[];
/* Per ms_layer_type: what the layer does, for "not a key of a maxpool2d
 * layer (it keeps the channels)" (`note`) and for the reference (`doc`). */
typedef struct {
  const char *note, *doc;
} layer_type_doc;
extern const layer_type_doc cfg_layer_type_docs[];
extern const char *const cfg_sections[];
extern const size_t cfg_n_sections;

/* Sizes known at compile time, for arrays indexed by row (checked in
 * config_schema.c). */
#define CFG_MAX_KEYS 96
#define CFG_N_LAYER_KEYS 16
#define CFG_N_LAYER_TYPES 12 /* values of ms_layer_type */
#define CFG_ALL_LAYER_TYPES ((1u << CFG_N_LAYER_TYPES) - 1)
#define CFG_N_SECTIONS 9

/* Rows of cfg_layer_keys, in the order the emitter writes them. */
enum {
  LAYER_TYPE = 0,
  LAYER_UNITS,
  LAYER_FILTERS,
  LAYER_KERNEL,
  LAYER_STRIDE,
  LAYER_PADDING,
  LAYER_RATE,
  LAYER_EPS,
  LAYER_ACTIVATION,
  LAYER_ALPHA,
  LAYER_INIT,
  LAYER_VOCAB,
  LAYER_DIM,
  LAYER_HEADS,
  LAYER_CAUSAL,
  LAYER_HIDDEN
};

/* Fills every field of a layer item with its default (type dense,
 * activation none, alpha 0.01, eps 1e-5, the rest 0 / the first value),
 * padding bytes zeroed so that layers compare bytewise. */
void cfg_layer_defaults(ms_layer_cfg *l);

/* @return 1 when row `row` of cfg_layer_keys is a key of l: its type is in
 * the row's `uses`, and for alpha the activation is leaky_relu. 0 for an
 * invalid type. */
int cfg_layer_key_applies(const ms_layer_cfg *l, size_t row);

/* @return 1 when the field of row `row` of l holds its default, bit for bit
 * (so -0 is not the default 0). */
int cfg_layer_key_is_default(const ms_layer_cfg *l, size_t row);

/* "kernel, stride" for a valid type: the keys (besides type) of that type. */
void cfg_layer_type_keys(int type, char *out, size_t n);

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

/* @return the name of value v of the K_ENUM row k, or "invalid". */
const char *cfg_enum_name(const key_spec *k, int v);

/* @return 1 when v is a value of the K_ENUM row k (it has a name). */
int cfg_enum_valid(const key_spec *k, int v);

/* Appends s (at most size bytes) so that it reads back as itself: plain when
 * that is safe, double-quoted with escapes otherwise. */
void cfg_emit_string(sbuf *b, const char *s, size_t size);

/* Appends "[28, 28]" (or "[]"). */
void cfg_emit_dims(sbuf *b, const ms_dims *d);

/* Appends "[0.5, 0.25]" (or "[]"), each number in the shortest form that
 * reads back as the same float. */
void cfg_emit_floats(sbuf *b, const ms_floats *f);

/* "[1, 100000]", "> 0", "(0, 1)": the bounds of k without the noun. */
void cfg_range_bounds(const key_spec *k, char *out, size_t n);

/* Appends the value of row k inside base as the resolved config writes it
 * (model.layers excepted: its items are written apart). */
void cfg_emit_value(sbuf *b, const key_spec *k, const void *base);

/* ---- the list of problems of one report (config_value.c) -------------------- */

typedef struct {
  sbuf b;
  int n;
} cfg_errlist;

/* Adds one problem line, "WHERE: message" (WHERE may be NULL); past the
 * 20th only counts it. */
void cfg_err_add(cfg_errlist *e, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turns the collected problems into the return code (0, MS_ECONFIG, or
 * MS_ENOMEM) and the ms_error message, one problem a line; frees e's text. */
int cfg_err_finish(cfg_errlist *e);

/* ---- values, shared by the file and by --set (config_value.c) --------------- */

/* Stores scalar s (n bytes, plain or quoted) into the field of k inside base;
 * writes nothing on failure.
 * @return 0, or -1 with "expected ..., found ..." in why (WHY_MAX bytes). */
int cfg_set_scalar(const key_spec *k, void *base, const char *s, size_t n, int plain, char *why);

/* Store a list node into the K_DIMS (ms_dims) or K_FLOATS (ms_floats) field
 * of k inside base; write nothing on failure.
 * @return 0, or -1 with the reason in why (WHY_MAX bytes). */
int cfg_set_dims(const key_spec *k, void *base, yaml_document_t *doc, const yaml_node_t *v,
                 char *why);
int cfg_set_floats(const key_spec *k, void *base, yaml_document_t *doc, const yaml_node_t *v,
                   char *why);

/* "found ..." for any node: "a mapping", "a list", "'abc'", "nothing". */
void cfg_describe_node(const yaml_node_t *node, char *out, size_t n);

/* 1 for a plain scalar that is a YAML null word. */
int cfg_is_empty_plain(const yaml_node_t *node);

/* The closest of `count` names (`stride` bytes apart, so that the path
 * members of a key_spec table serve too) to name, or NULL when none is
 * close. */
const char *cfg_nearest(const char *name, const char *const *names, size_t count, size_t stride);

/* The known key nearest to path (an exact last part wins), or NULL. */
const char *cfg_suggest_key(const char *path);

/* The row of table with this path, or NULL. */
const key_spec *cfg_find_key(const key_spec *table, size_t count, const char *path);

/* ---- rules (config_validate.c) -------------------------------------------------- */

/* The problem of the numeric, bool or K_ENUM field of row k inside base, as
 * "expected ..., found ..." in why (n bytes). @return 1, or 0 when there is
 * none. */
int cfg_bounds_problem(const key_spec *k, const void *base, char *why, size_t n);

/* The problem of row `row` of layer l under the rules of its type, in why
 * (n bytes), without the "model.layers[i].key: " prefix; `missing`: the file
 * did not give the key. @return 1, or 0 when there is none. */
int cfg_layer_key_problem(const ms_layer_cfg *l, size_t row, int missing, char *why, size_t n);

#endif
