/* config — YAML run description → ms_config: parsing, `--set` overrides,
 * validation and the cross-field checks, all driven by the schema table
 * `cfg_keys` of config_schema.c (which also holds defaults and emission).
 * Adding a key is one row there (plus the struct field). `model.layers`, a
 * list of mappings, is the one special case; its items are described by the
 * table `cfg_layer_keys`, whose rows also say which layer types each key
 * belongs to and which types need it. `model.input` is the one list of
 * scalars.
 *
 * Layer items: every item starts from the item defaults (a missing type is
 * dense). The rules of the layer's type (layer_key_problem) are checked once
 * a whole item is read, so that the file's messages carry the line of the
 * key, and again by config_validate() for what `--set` made. A `--set` on a
 * layer resets the keys it makes inapplicable (reset_dropped_keys).
 *
 * A failed config_parse() or config_override() leaves the caller's struct
 * untouched: parsing works on a copy, an override writes only on success.
 */
#include "config.h"

#include "config_internal.h"
#include "ms_error.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- overrides ------------------------------------------------------------------ */

/* Splits `model.layers[3].units` into 3 and "units". @return 0 or -1. */
static int layer_path(const char *path, int *index, const char **field) {
  static const char prefix[] = "model.layers[";
  char *end;
  const char *num = path + sizeof prefix - 1;
  if (strncmp(path, prefix, sizeof prefix - 1) || !isdigit((unsigned char)*num)) return -1;
  errno = 0;
  long v = strtol(num, &end, 10);
  if (errno || v > INT_MAX || strncmp(end, "].", 2)) return -1;
  *index = (int)v;
  *field = end + 2;
  return 0;
}

/* After a --set on a layer: the keys that belonged to `before` but no longer
 * belong to `after` (another type; an activation other than leaky_relu for
 * alpha) go back to their defaults, so that `--set model.layers[2].type=
 * maxpool2d` turns a dense layer into a pool without a units to unset. */
static void reset_dropped_keys(const ms_layer_cfg *before, ms_layer_cfg *after) {
  ms_layer_cfg d;
  cfg_layer_defaults(&d);
  for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++) {
    const key_spec *k = &cfg_layer_keys[j];
    if (cfg_layer_key_applies(before, j) && !cfg_layer_key_applies(after, j))
      memcpy((char *)after + k->off, (const char *)&d + k->off, k->size);
  }
}

/* @return 1 when the parser holds another document (or a syntax error
 * after the first), 0 at the end of the stream. */
static int more_documents(yaml_parser_t *parser) {
  yaml_document_t extra;
  if (!yaml_parser_load(parser, &extra)) return 1;
  int more = yaml_document_get_root_node(&extra) != NULL;
  yaml_document_delete(&extra);
  return more;
}

int config_override(ms_config *cfg, const char *assignment) {
  char path[256], why[WHY_MAX] = "", found[96];
  const char *eq = strchr(assignment, '='), *field = path, *hint;
  const key_spec *k;
  int index = -1, n = cfg->model.n_layers, rc = 0;
  yaml_parser_t parser;
  yaml_document_t doc;

  if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof path)
    return ms_error_set(MS_ECONFIG, "--set %s: expected section.key=value", assignment);
  snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
  if (!strncmp(path, "model.layers", 12) && strcmp(path, "model.layers") &&
      layer_path(path, &index, &field))
    return ms_error_set(MS_ECONFIG, "--set %s: expected model.layers[INDEX].KEY=value", assignment);
  if (index >= 0 && (index > n || index >= MS_MAX_LAYERS)) {
    if (n < MS_MAX_LAYERS)
      return ms_error_set(MS_ECONFIG,
                          "--set %s: expected a layer index in [0, %d] (%d layers; index %d "
                          "appends one), found %d",
                          assignment, n, n, n, index);
    return ms_error_set(MS_ECONFIG, "--set %s: expected a layer index in [0, %d], found %d",
                        assignment, MS_MAX_LAYERS - 1, index);
  }
  k = index >= 0 ? cfg_find_key(cfg_layer_keys, cfg_n_layer_keys, field)
                 : cfg_find_key(cfg_keys, cfg_n_keys, path);
  if (k && k->type == K_LAYERS)
    return ms_error_set(MS_ECONFIG, "--set %s: expected model.layers[INDEX].KEY=value", assignment);
  if (!k && index >= 0 &&
      (hint = cfg_nearest(field, cfg_layer_key_names, cfg_n_layer_keys, sizeof(char *))))
    return ms_error_set(MS_ECONFIG,
                        "--set %s: unknown key '%s', did you mean 'model.layers[%d].%s'?",
                        assignment, path, index, hint);
  if (!k && index < 0 && (hint = cfg_suggest_key(path)))
    return ms_error_set(MS_ECONFIG, "--set %s: unknown key '%s', did you mean '%s'?", assignment,
                        path, hint);
  if (!k) return ms_error_set(MS_ECONFIG, "--set %s: unknown key '%s'", assignment, path);

  /* The value is one YAML scalar, so quotes and escapes work as in the file. */
  if (!yaml_parser_initialize(&parser))
    return ms_error_set(MS_ENOMEM, "out of memory applying --set %s", assignment);
  yaml_parser_set_input_string(&parser, (const unsigned char *)eq + 1, strlen(eq + 1));
  if (!yaml_parser_load(&parser, &doc)) {
    rc = ms_error_set(MS_ECONFIG,
                      "--set %s: expected a YAML scalar value, found a syntax error (%s)",
                      assignment, parser.problem ? parser.problem : "unknown problem");
    goto out;
  }
  const yaml_node_t *node = yaml_document_get_root_node(&doc);
  /* A second document ("1\n---\n2") would be ignored: refuse it. */
  if (node && more_documents(&parser)) {
    char q[512];
    rc = ms_error_set(MS_ECONFIG, "--set %s: expected one YAML value, found more than one document",
                      ms_escape(assignment, 0, q, sizeof q));
    yaml_document_delete(&doc);
    goto out;
  }
  ms_layer_cfg layer, before;
  if (index >= 0 && index < n)
    memcpy(&layer, &cfg->model.layers[index], sizeof layer);
  else
    cfg_layer_defaults(&layer); /* index == n: a new layer starts from the item defaults */
  memcpy(&before, &layer, sizeof before);
  if (node && k->type == K_DIMS && node->type == YAML_SEQUENCE_NODE) {
    if (!cfg_set_dims(k, cfg, &doc, node, why)) why[0] = '\0';
  } else if (node && k->type == K_FLOATS && node->type == YAML_SEQUENCE_NODE) {
    if (!cfg_set_floats(k, cfg, &doc, node, why)) why[0] = '\0';
  } else if (node && node->type != YAML_SCALAR_NODE) {
    cfg_describe_node(node, found, sizeof found);
    snprintf(why, sizeof why, "expected a single value, found %s", found);
  } else if (!cfg_set_scalar(k, index >= 0 ? (void *)&layer : (void *)cfg,
                             node ? (const char *)node->data.scalar.value : "",
                             node ? node->data.scalar.length : 0,
                             !node || node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, why)) {
    why[0] = '\0';
    if (index >= 0) {
      reset_dropped_keys(&before, &layer);
      memcpy(&cfg->model.layers[index], &layer, sizeof layer);
      if (index == n) cfg->model.n_layers++; /* index == n appends a layer */
    }
  }
  if (why[0]) rc = ms_error_set(MS_ECONFIG, "--set %s: %s", assignment, why);
  yaml_document_delete(&doc);
out:
  yaml_parser_delete(&parser);
  return rc;
}

/* Checks one field against its row; adds a problem when it is out of bounds. */

/* ---- reading the file ------------------------------------------------------------ */

int config_read_file(const char *path, char **out, size_t *len) {
  char *buf = NULL, *nb;
  size_t n = 0, cap = 0, got;
  int err;
  *out = NULL;
  *len = 0;
  /* O_NONBLOCK: a FIFO must not block the open; only a regular file is read. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return ms_error_set(MS_EUSAGE, "cannot read config '%s': %s", path, strerror(errno));
  if (fstat(fd, &st) != 0) st.st_mode = 0;
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ms_error_set(MS_EUSAGE, "cannot read config '%s': %s", path,
                        S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
  }
  if ((uint64_t)st.st_size > CONFIG_MAX_BYTES) {
    close(fd);
    return ms_error_set(MS_ECONFIG, "%s:1:1: expected a config of at most %u bytes, found %lld bytes",
                        path, CONFIG_MAX_BYTES, (long long)st.st_size);
  }
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    return ms_error_set(MS_ENOMEM, "out of memory reading config '%s'", path);
  }
  do {
    if (cap - n < 4096 + 1) {
      cap = cap ? cap * 2 : 8192;
      if (!(nb = realloc(buf, cap))) {
        free(buf);
        fclose(f);
        return ms_error_set(MS_ENOMEM, "out of memory reading config '%s'", path);
      }
      buf = nb;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
  } while (got > 0 && n <= CONFIG_MAX_BYTES);
  err = ferror(f) ? errno : 0;
  fclose(f);
  if (err) {
    free(buf);
    return ms_error_set(MS_EUSAGE, "cannot read config '%s': %s", path, strerror(err));
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}
