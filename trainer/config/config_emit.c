/* config_emit — the writers that walk the schema table: the resolved config
 * (config_emit, which config_parse reads back to an equal struct), the
 * Markdown reference (config_reference) and the key-by-key diff of two
 * configs (config_diff). Every value is written the one way cfg_emit_value
 * writes it, enum keys by the names of the schema's tables.
 */
#include "config.h"

#include "config_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- values ------------------------------------------------------------------------ */

/* The code point of the UTF-8 sequence at s (n bytes left) and its length
 * in *len; a byte that starts no valid sequence is returned as itself. */
static unsigned utf8_at(const unsigned char *s, size_t n, size_t *len) {
  unsigned cp = s[0];
  size_t k = cp >= 0xF0 ? 4 : cp >= 0xE0 ? 3 : cp >= 0xC0 ? 2 : 1;
  *len = 1;
  if (k == 1 || k > n) return cp;
  cp &= 0x3F >> (k - 1);
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return s[0];
    cp = cp << 6 | (s[i] & 0x3F);
  }
  *len = k;
  return cp;
}

void cfg_emit_string(sbuf *b, const char *s, size_t size) {
  size_t n = strnlen(s, size), i = 0, len;
  int plain = n > 0 && s[0] != '-' && !cfg_is_null_word(s, n);
  for (; plain && i < n; i++) plain = isalnum((unsigned char)s[i]) || strchr("_./-", s[i]);
  if (plain) {
    cfg_sb_printf(b, "%.*s", (int)n, s);
    return;
  }
  cfg_sb_printf(b, "\"");
  for (i = 0; i < n; i += len) {
    unsigned cp = utf8_at((const unsigned char *)s + i, n - i, &len);
    if (cp == '"' || cp == '\\')
      cfg_sb_printf(b, "\\%c", (char)cp);
    else if (cp == '\n')
      cfg_sb_printf(b, "\\n");
    else if (cp == '\t')
      cfg_sb_printf(b, "\\t");
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
      /* C0 and C1 controls: YAML does not allow them raw (U+0085 would even
       * read as a line break). */
      cfg_sb_printf(b, "\\x%02X", cp);
    else if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF)
      /* Line and paragraph separators fold like line breaks; the BOM and the
       * non-characters are not printable YAML. */
      cfg_sb_printf(b, "\\u%04X", cp);
    else
      cfg_sb_printf(b, "%.*s", (int)len, s + i);
  }
  cfg_sb_printf(b, "\"");
}

void cfg_emit_dims(sbuf *b, const ms_dims *d) {
  cfg_sb_printf(b, "[");
  for (int i = 0; i < d->ndim && i < MS_MAX_DIMS; i++)
    cfg_sb_printf(b, "%s%d", i ? ", " : "", d->dims[i]);
  cfg_sb_printf(b, "]");
}

void cfg_emit_floats(sbuf *b, const ms_floats *f) {
  char num[40];
  cfg_sb_printf(b, "[");
  for (int i = 0; i < f->n && i < MS_NORM_MAX; i++) {
    /* The shortest form that reads back as the same float. */
    for (int prec = 6; prec <= 9; prec++) {
      snprintf(num, sizeof num, "%.*g", prec, (double)f->v[i]);
      if (strtof(num, NULL) == f->v[i]) break;
    }
    cfg_sb_printf(b, "%s%s", i ? ", " : "", num);
  }
  cfg_sb_printf(b, "]");
}

void cfg_emit_value(sbuf *b, const key_spec *k, const void *base) {
  const char *field = (const char *)base + k->off;
  char num[40];
  int iv = 0;
  uint64_t uv;
  double dv;
  memcpy(&iv, field, k->type == K_INT || k->type == K_BOOL || k->type == K_ENUM ? sizeof iv : 0);
  switch (k->type) {
    case K_STR: cfg_emit_string(b, field, k->size); break;
    case K_INT: cfg_sb_printf(b, "%d", iv); break;
    case K_BOOL: cfg_sb_printf(b, "%s", iv == 1 ? "true" : iv ? "invalid" : "false"); break;
    case K_ENUM: cfg_sb_printf(b, "%s", cfg_enum_name(k, iv)); break;
    case K_U64:
      memcpy(&uv, field, sizeof uv);
      cfg_sb_printf(b, "%" PRIu64, uv);
      break;
    case K_DBL:
      memcpy(&dv, field, sizeof dv);
      cfg_fmt_double(num, sizeof num, dv);
      cfg_sb_printf(b, "%s", num);
      break;
    case K_DIMS: {
      ms_dims d;
      memcpy(&d, field, sizeof d);
      cfg_emit_dims(b, &d);
      break;
    }
    case K_FLOATS: cfg_emit_floats(b, (const ms_floats *)(const void *)field); break;
    case K_LAYERS: break;
  }
}

/* A layer as a flow mapping: type first, then the keys of its type, then any
 * other key that does not hold its default (only an invalid layer has one),
 * so that every layer reads back as itself. */
static void emit_layer(sbuf *b, const ms_layer_cfg *l) {
  cfg_sb_printf(b, "{type: ");
  cfg_emit_value(b, &cfg_layer_keys[LAYER_TYPE], l);
  for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++) {
    if (!cfg_layer_key_applies(l, j) && cfg_layer_key_is_default(l, j)) continue;
    cfg_sb_printf(b, ", %s: ", cfg_layer_keys[j].path);
    cfg_emit_value(b, &cfg_layer_keys[j], l);
  }
  cfg_sb_printf(b, "}");
}

/* ---- the resolved config --------------------------------------------------------- */

char *config_emit(const ms_config *cfg) {
  sbuf b = {0};
  size_t section_len = 0;
  cfg_sb_printf(&b, "# midscale resolved config: every key, defaults filled in\n");
  for (size_t i = 0; i < cfg_n_keys; i++) {
    const key_spec *k = &cfg_keys[i];
    /* section.key, or section.group.key for a group of keys (train.early_stop),
     * written as a mapping inside the section. */
    const char *name = strchr(k->path, '.') + 1, *leaf = cfg_leaf(k->path);
    size_t sec_len = (size_t)(name - 1 - k->path), start;
    if (i == 0 || sec_len != section_len || strncmp(cfg_keys[i - 1].path, k->path, sec_len + 1))
      cfg_sb_printf(&b, "%.*s:\n", (int)sec_len, k->path);
    section_len = sec_len;
    size_t grp_len = (size_t)(leaf - k->path);
    if (leaf != name && (i == 0 || strncmp(cfg_keys[i - 1].path, k->path, grp_len) ||
                         strchr(cfg_keys[i - 1].path + grp_len, '.')))
      cfg_sb_printf(&b, "  %.*s:\n", (int)(leaf - 1 - name), name);
    start = b.len;
    cfg_sb_printf(&b, "%s%s: ", leaf != name ? "    " : "  ", leaf);
    if (k->type == K_LAYERS)
      cfg_sb_printf(&b, "%s", cfg->model.n_layers > 0 ? "" : "[]");
    else
      cfg_emit_value(&b, k, cfg);
    /* Comments line up at column 40 when the value leaves room. */
    size_t w = b.oom ? 0 : b.len - start;
    cfg_sb_printf(&b, "%*s# %s\n", w < 38 ? (int)(38 - w) : 2, "", k->doc);
    for (int l = 0; k->type == K_LAYERS && l < cfg->model.n_layers && l < MS_MAX_LAYERS; l++) {
      cfg_sb_printf(&b, "    - ");
      emit_layer(&b, &cfg->model.layers[l]);
      cfg_sb_printf(&b, "\n");
    }
  }
  if (b.oom) free(b.s);
  return b.oom ? NULL : b.s;
}

/* ---- the reference ------------------------------------------------------------- */

static const char *type_name(const key_spec *k) {
  switch (k->type) {
    case K_STR: return "string";
    case K_INT: return "integer";
    case K_U64: return "unsigned 64-bit integer";
    case K_DBL: return "number";
    case K_BOOL: return "bool";
    case K_ENUM: return "enum";
    case K_LAYERS: return "list of layers";
    case K_DIMS: return "list of integers";
    case K_FLOATS: return "list of numbers";
  }
  return "?";
}

/* Appends one table row: key, type, default, allowed values, resume, doc. */
static void reference_row(sbuf *b, const char *path, const key_spec *k, const void *defaults) {
  char want[160];
  cfg_sb_printf(b, "| `%s` | %s | ", path, type_name(k));
  if (k->type == K_LAYERS) {
    cfg_sb_printf(b, "(none) | 1 to %d layers, each a mapping of the `model.layers[i].*` keys",
                  MS_MAX_LAYERS);
  } else if (k->type == K_INT &&
             !cfg_in_range(k, *(const int *)((const char *)defaults + k->off))) {
    /* A default outside the range means the key is required. */
    cfg_range_bounds(k, want, sizeof want);
    cfg_sb_printf(b, "(none) | required, %s", want);
  } else {
    cfg_sb_printf(b, "`");
    cfg_emit_value(b, k, defaults);
    cfg_sb_printf(b, "` | ");
    switch (k->type) {
      case K_STR:
        cfg_sb_printf(b, "%sat most %zu bytes", k->flags & F_REQUIRED ? "required, " : "",
                      k->size - 1);
        break;
      case K_ENUM:
        for (const char *const *a = k->allowed; *a; a++)
          cfg_sb_printf(b, "%s`%s`", a == k->allowed ? "" : ", ", *a);
        break;
      case K_BOOL: cfg_sb_printf(b, "`true`, `false`"); break;
      case K_U64: cfg_sb_printf(b, "[0, %" PRIu64 "]", UINT64_MAX); break;
      case K_INT:
      case K_DBL:
        cfg_range_bounds(k, want, sizeof want);
        cfg_sb_printf(b, "%s", want);
        break;
      case K_DIMS: cfg_sb_printf(b, "0 to %d integers >= 1, e.g. `[28, 28]`", MS_MAX_DIMS); break;
      case K_FLOATS:
        cfg_range_bounds(k, want, sizeof want);
        cfg_sb_printf(b, "0 to %d %snumbers%s%s, e.g. `[0.5]`", MS_NORM_MAX,
                      k->min <= -HUGE_VAL ? "finite " : "", k->min <= -HUGE_VAL ? "" : " ",
                      k->min <= -HUGE_VAL ? "" : want);
        break;
      case K_LAYERS: break;
    }
  }
  cfg_sb_printf(b, " | %s | ", k->resume_safe ? "yes" : "no");
  /* Markdown: a bar would end the cell, `<run.dir>` would read as a tag. */
  for (const char *s = k->doc; *s; s++)
    cfg_sb_printf(b, "%s", *s == '|' ? "\\|" : *s == '<' ? "&lt;" : (char[2]){*s, '\0'});
  /* Layer items: the types they belong to. */
  for (int t = 0, n = 0; k->uses && k->uses != CFG_ALL_LAYER_TYPES && t < CFG_N_LAYER_TYPES; t++)
    if (k->uses & (1u << t))
      cfg_sb_printf(b, "%s%s",
                    n++ ? ", " : "; layer types: ", cfg_enum_name(&cfg_layer_keys[LAYER_TYPE], t));
  cfg_sb_printf(b, " |\n");
}

/* The table of layer types: their keys (required ones marked) and what they do. */
static void reference_layer_types(sbuf *b) {
  cfg_sb_printf(b,
                "\n### Layer types\n\n"
                "Each item of `model.layers` is a flow or block mapping, `type` first by\n"
                "convention (`{type: conv2d, filters: 32, kernel: 3, activation: relu}`); an\n"
                "omitted key takes its default. A key that does not belong to the layer's type\n"
                "is an error unless it holds its default, and so is `alpha` with an activation\n"
                "other than `leaky_relu`. `--set model.layers[i].KEY=value` edits layer i; an\n"
                "index equal to the number of layers appends a layer that starts from the\n"
                "defaults (set its `type` first). A `--set` after which a key no longer applies\n"
                "(another `type`, an activation other than `leaky_relu`) resets that key to its\n"
                "default. Whether a window fits the input is checked with the model, once the\n"
                "input shape is known.\n\n"
                "| type | keys | what it does |\n| --- | --- | --- |\n");
  for (int t = 0; t < CFG_N_LAYER_TYPES; t++) {
    int n = 0;
    cfg_sb_printf(b, "| `%s` | ", cfg_enum_name(&cfg_layer_keys[LAYER_TYPE], t));
    for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++)
      if (cfg_layer_keys[j].uses & (1u << t))
        cfg_sb_printf(b, "%s`%s`%s", n++ ? ", " : "", cfg_layer_keys[j].path,
                      cfg_layer_keys[j].needs & (1u << t) ? " (required)" : "");
    cfg_sb_printf(b, "%s | %s |\n", n ? "" : "(none)", cfg_layer_type_docs[t].doc);
  }
}

char *config_reference(void) {
  sbuf b = {0};
  ms_config defaults;
  ms_layer_cfg layer_defaults;
  config_defaults(&defaults);
  cfg_layer_defaults(&layer_defaults);
  cfg_sb_printf(&b,
                "# midscale config reference\n\n"
                "<!-- Generated by `midscale config-reference` from the schema table in\n"
                "     trainer/config/config_schema.c. Do not edit: the test e2e_config_reference\n"
                "     fails when this file and the table disagree. -->\n\n"
                "A config is YAML with one mapping per section. Every key has a type, a\n"
                "default and a range; an omitted key takes its default, an unknown key is an\n"
                "error. `--set section.key=value` overrides a key from the command line\n"
                "(`--set model.layers[1].units=512` for list items, `--set "
                "model.input=[28,28]`\n"
                "for lists). `midscale check CONFIG` validates a config without training.\n"
                "An enum value that is not allowed is an error that names the nearest allowed\n"
                "value.\n\n"
                "**Resume-safe** keys may differ between a checkpoint and the run that resumes\n"
                "from it (`--resume`); a change in any other key (they change the model, the\n"
                "data or the sample order) makes the resume fail with a message that lists\n"
                "every differing key with both values.\n");
  for (size_t s = 0; s < cfg_n_sections; s++) {
    size_t sl = strlen(cfg_sections[s]);
    cfg_sb_printf(&b,
                  "\n## %s\n\n| key | type | default | allowed values | resume-safe | "
                  "description |\n| --- | --- | --- | --- | --- | --- |\n",
                  cfg_sections[s]);
    for (size_t i = 0; i < cfg_n_keys; i++) {
      const key_spec *k = &cfg_keys[i];
      if (strncmp(k->path, cfg_sections[s], sl) || k->path[sl] != '.') continue;
      reference_row(&b, k->path, k, &defaults);
      for (size_t j = 0; k->type == K_LAYERS && j < cfg_n_layer_keys; j++) {
        char path[64];
        snprintf(path, sizeof path, "model.layers[i].%s", cfg_layer_keys[j].path);
        reference_row(&b, path, &cfg_layer_keys[j], &layer_defaults);
      }
    }
    if (!strcmp(cfg_sections[s], "model")) reference_layer_types(&b);
  }
  if (b.oom) free(b.s);
  return b.oom ? NULL : b.s;
}

/* ---- the diff ----------------------------------------------------------------- */

/* Adds "path old → new" to out when the values of k in a and b differ. */
static int diff_value(sbuf *out, const char *path, const key_spec *k, const void *a,
                      const void *b) {
  sbuf va = {0}, vb = {0};
  int differ;
  cfg_emit_value(&va, k, a);
  cfg_emit_value(&vb, k, b);
  differ = va.oom || vb.oom || strcmp(va.s, vb.s) != 0;
  if (differ)
    cfg_sb_printf(out, "%s%s %s → %s", out->len ? "; " : "", path, va.s ? va.s : "?",
                  vb.s ? vb.s : "?");
  free(va.s);
  free(vb.s);
  return differ;
}

/* The layer items of a and b key by key, and their count. */
static int diff_layers(sbuf *d, const ms_config *a, const ms_config *b, config_diff_keys which) {
  char path[64];
  int n = 0, na = a->model.n_layers, nb = b->model.n_layers;
  if (na != nb) {
    cfg_sb_printf(d, "%smodel.layers %d layers → %d layers", d->len ? "; " : "", na, nb);
    n++;
  }
  for (int l = 0; l < na && l < nb && l < MS_MAX_LAYERS; l++)
    for (size_t j = 0; j < cfg_n_layer_keys; j++) {
      if (which == CONFIG_DIFF_PINNED && cfg_layer_keys[j].resume_safe) continue;
      snprintf(path, sizeof path, "model.layers[%d].%s", l, cfg_layer_keys[j].path);
      n += diff_value(d, path, &cfg_layer_keys[j], &a->model.layers[l], &b->model.layers[l]);
    }
  return n;
}

int config_diff(const ms_config *a, const ms_config *b, config_diff_keys which, char *msg,
                size_t cap) {
  sbuf d = {0};
  int n = 0;
  for (size_t i = 0; i < cfg_n_keys; i++) {
    const key_spec *k = &cfg_keys[i];
    if (which == CONFIG_DIFF_PINNED && k->resume_safe) continue;
    n += k->type == K_LAYERS ? diff_layers(&d, a, b, which) : diff_value(&d, k->path, k, a, b);
  }
  if (cap > 0) {
    if (d.oom || !d.s)
      snprintf(msg, cap, "%s", n ? "(out of memory listing the keys)" : "");
    else if (d.len < cap)
      memcpy(msg, d.s, d.len + 1);
    else {
      size_t keep = cap > 4 ? cap - 4 : 0;
      while (keep > 0 && ((unsigned char)d.s[keep] & 0xC0) == 0x80) keep--; /* whole UTF-8 */
      snprintf(msg, cap, "%.*s...", (int)keep, d.s);
    }
  }
  free(d.s);
  return n;
}
