/* config_parse — a YAML document → ms_config (config_parse), every problem
 * of the text reported at once with file:line:col. The scalars and lists
 * are stored by config_value.c; the rules of a layer's type are checked once
 * a whole item is read (cfg_layer_key_problem), so that the messages carry
 * the line of the key. A failed parse leaves the caller's struct untouched:
 * it works on a copy.
 */
#include "config.h"

#include "config_internal.h"
#include "ms_error.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- parsing a document ------------------------------------------------------- */

typedef struct {
  const char *file;
  yaml_document_t *doc;
  ms_config *cfg;
  cfg_errlist err;
} pctx;

__attribute__((format(printf, 3, 4))) static void perr(pctx *c, yaml_mark_t m, const char *fmt,
                                                       ...) {
  char loc[MS_PATH_MAX + 64], msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(loc, sizeof loc, "%s:%zu:%zu", c->file, m.line + 1, m.column + 1);
  cfg_err_add(&c->err, loc, "%s", msg);
}

/* Checks that node is a mapping (or, when empty_ok, nothing at all). */
static int want_mapping(pctx *c, const yaml_node_t *node, const char *path, const char *what,
                        int empty_ok) {
  char found[96];
  if (node->type == YAML_MAPPING_NODE) return 1;
  if (empty_ok && cfg_is_empty_plain(node)) return 0;
  cfg_describe_node(node, found, sizeof found);
  perr(c, node->start_mark, "%s%sexpected %s, found %s", path, *path ? ": " : "", what, found);
  return 0;
}

/* @return 0, or -1 after reporting why the value of v does not fit k. */
static int set_from_node(pctx *c, const key_spec *k, void *base, const char *path,
                         const yaml_node_t *v) {
  char why[WHY_MAX], found[96];
  if (k->type == K_DIMS && v->type == YAML_SEQUENCE_NODE) {
    if (!cfg_set_dims(k, base, c->doc, v, why)) return 0;
  } else if (k->type == K_FLOATS && v->type == YAML_SEQUENCE_NODE) {
    if (!cfg_set_floats(k, base, c->doc, v, why)) return 0;
  } else if (v->type != YAML_SCALAR_NODE) {
    cfg_describe_node(v, found, sizeof found);
    snprintf(why, sizeof why, "expected a single value, found %s", found);
  } else if (!cfg_set_scalar(k, base, (const char *)v->data.scalar.value, v->data.scalar.length,
                             v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, why)) {
    return 0;
  }
  perr(c, v->start_mark, "%s: %s", path, why);
  return -1;
}

/* What parse_keys saw of one row of its table. */
typedef struct {
  size_t line;      /* 1-based line of the key; 0 = not given */
  yaml_mark_t mark; /* of the key */
  int bad;          /* the value was refused (and reported) */
} key_seen;

static void parse_layers(pctx *c, const yaml_node_t *v);

/* 1 when some key of the schema is inside the group `path.` (a mapping
 * within a section, such as train.early_stop). */
static int is_group(const char *path) {
  size_t n = strlen(path);
  for (size_t i = 0; i < cfg_n_keys; i++)
    if (!strncmp(cfg_keys[i].path, path, n) && cfg_keys[i].path[n] == '.') return 1;
  return 0;
}

/* Reads the keys of one mapping into base: a section (`table` = keys, looked
 * up as `prefix.key`) or a layer item (`table` = cfg_layer_keys, looked up as
 * `key`). seen[row] records where each row was set (for duplicates and for
 * the rules of layer items) and whether its value was refused. */
static void parse_keys(pctx *c, const yaml_node_t *map, const char *prefix, const key_spec *table,
                       size_t count, void *base, key_seen *seen) {
  char name[128], path[256], found[96];
  int is_section = table == cfg_keys;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    if (kn->type != YAML_SCALAR_NODE ||
        memchr(kn->data.scalar.value, '\0', kn->data.scalar.length)) {
      cfg_describe_node(kn, found, sizeof found);
      perr(c, kn->start_mark, "%s: expected a key name, found %s", prefix, found);
      continue;
    }
    snprintf(name, sizeof name, "%.*s", (int)kn->data.scalar.length,
             (const char *)kn->data.scalar.value);
    snprintf(path, sizeof path, "%s.%s", prefix, name);
    const key_spec *k = cfg_find_key(table, count, is_section ? path : name);
    if (!k && is_section && is_group(path)) {
      /* A group of keys inside a section (train.early_stop): its keys are
       * rows `section.group.key` of the same table. */
      if (want_mapping(c, vn, path, "a mapping of keys", 1))
        parse_keys(c, vn, path, table, count, base, seen);
      continue;
    }
    if (!k) {
      const char *s =
          is_section ? cfg_suggest_key(path)
                     : cfg_nearest(name, cfg_layer_key_names, cfg_n_layer_keys, sizeof(char *));
      if (s && is_section) {
        perr(c, kn->start_mark, "%s: unknown key, did you mean '%s'?", path, s);
      } else if (s) {
        perr(c, kn->start_mark, "%s: unknown key, did you mean '%s.%s'?", path, prefix, s);
      } else {
        sbuf known = {0};
        for (size_t i = 0; i < count; i++)
          if (!is_section || !strncmp(table[i].path, path, strlen(prefix) + 1))
            cfg_sb_printf(&known, "%s%s", known.len ? ", " : "",
                          is_section ? table[i].path + strlen(prefix) + 1 : table[i].path);
        perr(c, kn->start_mark, "%s: unknown key (%s has: %s)", path, prefix,
             known.s ? known.s : "");
        free(known.s);
      }
      continue;
    }
    size_t row = (size_t)(k - table);
    if (seen[row].line) {
      perr(c, kn->start_mark, "%s: duplicate key (first set at line %zu)", path, seen[row].line);
      continue;
    }
    seen[row].line = kn->start_mark.line + 1;
    seen[row].mark = kn->start_mark;
    if (k->type == K_LAYERS)
      parse_layers(c, vn);
    else
      seen[row].bad = set_from_node(c, k, base, path, vn) != 0;
  }
}

static void parse_layers(pctx *c, const yaml_node_t *v) {
  char found[96], prefix[64];
  /* The file's list replaces whatever was there. */
  memset(c->cfg->model.layers, 0, sizeof c->cfg->model.layers);
  c->cfg->model.n_layers = 0;
  if (cfg_is_empty_plain(v)) return; /* `layers:` with nothing: validate reports it */
  if (v->type != YAML_SEQUENCE_NODE) {
    cfg_describe_node(v, found, sizeof found);
    perr(c, v->start_mark, "model.layers: expected a list of layers, found %s", found);
    return;
  }
  long count = v->data.sequence.items.top - v->data.sequence.items.start;
  if (count > MS_MAX_LAYERS) {
    perr(c, v->start_mark, "model.layers: expected at most %d layers, found %ld", MS_MAX_LAYERS,
         count);
    return;
  }
  for (int i = 0; i < (int)count; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
    ms_layer_cfg *l = &c->cfg->model.layers[i];
    key_seen seen[CFG_N_LAYER_KEYS];
    char why[WHY_MAX];
    memset(seen, 0, sizeof seen);
    cfg_layer_defaults(l);
    snprintf(prefix, sizeof prefix, "model.layers[%d]", i);
    if (!want_mapping(c, item, prefix, "a mapping like {type: dense, units: 10, activation: relu}",
                      0))
      continue;
    parse_keys(c, item, prefix, cfg_layer_keys, cfg_n_layer_keys, l, seen);
    /* The rules of the layer's type, once all its keys are read (type need
     * not come first). An unknown type leaves nothing to judge by; a refused
     * value is already reported, and alpha depends on the activation. */
    if (seen[LAYER_TYPE].bad) continue;
    for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++) {
      if (seen[j].bad || (j == LAYER_ALPHA && seen[LAYER_ACTIVATION].bad) ||
          !cfg_layer_key_problem(l, j, !seen[j].line, why, sizeof why))
        continue;
      perr(c, seen[j].line ? seen[j].mark : item->start_mark, "%s.%s: %s", prefix,
           cfg_layer_keys[j].path, why);
    }
  }
  c->cfg->model.n_layers = (int)count;
}

static void parse_root(pctx *c, const yaml_node_t *root) {
  char name[128];
  size_t sec_line[CFG_N_SECTIONS] = {0};
  key_seen key_line[CFG_MAX_KEYS];
  memset(key_line, 0, sizeof key_line);
  if (!want_mapping(c, root, "",
                    "a mapping of sections (run, data, model, optim, ...) at the top level", 0))
    return;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    size_t s = 0;
    if (kn->type == YAML_SCALAR_NODE &&
        memchr(kn->data.scalar.value, '\0', kn->data.scalar.length)) {
      perr(c, kn->start_mark, "expected a section name, found a key with a NUL character");
      continue;
    }
    if (kn->type == YAML_SCALAR_NODE)
      snprintf(name, sizeof name, "%.*s", (int)kn->data.scalar.length,
               (const char *)kn->data.scalar.value);
    else
      snprintf(name, sizeof name, "(%s)", kn->type == YAML_MAPPING_NODE ? "a mapping" : "a list");
    while (s < cfg_n_sections && strcmp(cfg_sections[s], name)) s++;
    if (s == cfg_n_sections) {
      /* `lr:` at the top level is optim.lr out of its section. */
      const char *hint = cfg_suggest_key(name);
      if (!hint || strcmp(cfg_leaf(hint), name))
        hint = cfg_nearest(name, cfg_sections, cfg_n_sections, sizeof(char *));
      if (hint)
        perr(c, kn->start_mark, "%s: unknown section, did you mean '%s'?", name, hint);
      else
        perr(c, kn->start_mark,
             "%s: unknown section (expected one of run, data, model, optim, schedule, train, "
             "checkpoint, comm, log)",
             name);
    } else if (sec_line[s]) {
      perr(c, kn->start_mark, "%s: duplicate section (first at line %zu)", name, sec_line[s]);
    } else {
      sec_line[s] = kn->start_mark.line + 1;
      /* `log:` with nothing under it means all defaults. */
      if (want_mapping(c, vn, cfg_sections[s], "a mapping of keys", 1))
        parse_keys(c, vn, cfg_sections[s], cfg_keys, cfg_n_keys, c->cfg, key_line);
    }
  }
}

/* Reports a libyaml failure (encoding, syntax) as one problem. */
static void yaml_problem(pctx *c, const yaml_parser_t *p, const char *text, size_t len) {
  const char *problem = p->problem ? p->problem : "unknown problem";
  if (p->error == YAML_READER_ERROR) {
    /* Reader errors carry a byte offset, not a mark. Inside a multi-byte
     * sequence libyaml points at the bad trailing byte; point at the lead
     * byte instead, which is the one the user has to fix. */
    size_t at = p->problem_offset < len ? p->problem_offset : len;
    for (int k = 0; k < 3 && at > 0 && at < len && ((unsigned char)text[at] & 0xC0) != 0xC0 &&
                    ((unsigned char)text[at - 1] & 0x80);
         k++)
      at--;
    yaml_mark_t m = {0};
    for (size_t i = 0; i < at; i++) {
      m.column = text[i] == '\n' ? 0 : m.column + 1;
      m.line += text[i] == '\n';
    }
    unsigned byte = at < len ? (unsigned char)text[at] : 0;
    if (strstr(problem, "UTF-8") || strstr(problem, "Unicode"))
      perr(c, m,
           "expected UTF-8 text, found bytes that are not valid UTF-8 (0x%02X at offset %zu: "
           "%s); save the file as UTF-8",
           byte, at, problem);
    else
      perr(c, m, "expected YAML text, found an invalid character (0x%02X at offset %zu: %s)", byte,
           at, problem);
  } else if (p->context) {
    perr(c, p->problem_mark, "YAML syntax error: %s (%s at line %zu)", problem, p->context,
         p->context_mark.line + 1);
  } else {
    perr(c, p->problem_mark, "YAML syntax error: %s", problem);
  }
}

/* Checks the size, then the nesting depth event by event, stopping at the
 * first collection too deep: libyaml's scanner slows down with the square
 * of the flow depth, so a deep text must never be loaded whole. A syntax
 * error ends the walk quietly: yaml_parser_load reports it.
 * @return 1 within the limits (or a syntax error), 0 refused, -1 OOM. */
static int within_limits(pctx *c, const char *text, size_t len) {
  if (len > CONFIG_MAX_BYTES) {
    perr(c, (yaml_mark_t){0}, "expected a config of at most %u bytes, found %zu bytes",
         CONFIG_MAX_BYTES, len);
    return 0;
  }
  yaml_parser_t p;
  yaml_event_t ev;
  int depth = 0, ok = 1;
  if (!yaml_parser_initialize(&p)) return -1;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  for (;;) {
    if (!yaml_parser_parse(&p, &ev)) {
      ok = p.error == YAML_MEMORY_ERROR ? -1 : 1;
      break;
    }
    yaml_event_type_t t = ev.type;
    yaml_mark_t m = ev.start_mark;
    yaml_event_delete(&ev);
    if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
      if (++depth > CONFIG_MAX_DEPTH) {
        perr(c, m, "expected lists and mappings nested at most %d deep, found deeper nesting",
             CONFIG_MAX_DEPTH);
        ok = 0;
        break;
      }
    } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
      depth--;
    } else if (t == YAML_STREAM_END_EVENT) {
      break;
    }
  }
  yaml_parser_delete(&p);
  return ok;
}

int config_parse(ms_config *cfg, const char *text, size_t len, const char *filename) {
  yaml_parser_t parser;
  yaml_document_t doc, extra;
  pctx c = {.file = filename ? filename : "<config>"};
  int rc = MS_ENOMEM;

  if (!text) text = "", len = 0; /* libyaml asserts on a NULL input */
  c.cfg = malloc(sizeof *c.cfg);
  if (!c.cfg) goto out;
  memcpy(c.cfg, cfg, sizeof *cfg);
  if (!yaml_parser_initialize(&parser)) goto out_cfg;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int lim = within_limits(&c, text, len);
  if (lim < 0) goto out_parser;
  if (lim == 0) {
    /* refused: reported by within_limits */
  } else if (!yaml_parser_load(&parser, &doc)) {
    if (parser.error == YAML_MEMORY_ERROR) goto out_parser;
    yaml_problem(&c, &parser, text, len);
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    c.doc = &doc;
    if (!root) {
      perr(
          &c, (yaml_mark_t){0},
          "expected a mapping of sections (run, data, model, optim, ...), found an empty document");
    } else {
      parse_root(&c, root);
      /* A second document would be silently ignored: refuse it. */
      if (!yaml_parser_load(&parser, &extra)) {
        yaml_problem(&c, &parser, text, len);
      } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&extra);
        if (r2) perr(&c, r2->start_mark, "expected one YAML document, found a second one");
        yaml_document_delete(&extra);
      }
    }
    yaml_document_delete(&doc);
  }
  rc = cfg_err_finish(&c.err);
  if (rc == 0) memcpy(cfg, c.cfg, sizeof *cfg);
  c.err.b.s = NULL;
out_parser:
  free(c.err.b.s);
  yaml_parser_delete(&parser);
out_cfg:
  free(c.cfg);
out:
  return rc == MS_ENOMEM ? ms_error_set(MS_ENOMEM, "out of memory parsing %s", c.file) : rc;
}
