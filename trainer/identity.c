#include "identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

uint64_t identity_hash(const void *p, size_t n, uint64_t h) {
  return hash_xxh3(p, n, h);
}

uint64_t identity_binary_hash(void) {
  FILE *f = fopen("/proc/self/exe", "rb");
  if (!f) return 0;
  unsigned char buf[1 << 16];
  hash_stream st;
  hash_stream_reset(&st);
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) hash_stream_update(&st, buf, got);
  int bad = ferror(f);
  fclose(f);
  return bad ? 0 : hash_stream_digest(&st);
}

/* One key of an emitted config: its path and its value (comment cut). */
typedef struct {
  char path[96];
  const char *val;
  size_t len;
} entry;

/* Splits config_emit's text into entries. @return the count, or -1 (OOM). */
static int parse_emitted(const char *text, entry **out) {
  int n = 0, cap = 128, layer = 0;
  char section[48] = "";
  entry *e = malloc(sizeof *e * (size_t)cap);
  if (!e) return -1;
  for (const char *line = text; line && *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    const char *next = end ? end + 1 : NULL;
    if (len == 0 || line[0] == '#') {
      line = next;
      continue;
    }
    if (n == cap) {
      entry *grown = realloc(e, sizeof *e * (size_t)(cap *= 2));
      if (!grown) {
        free(e);
        return -1;
      }
      e = grown;
    }
    entry *x = &e[n];
    if (line[0] != ' ') { /* "section:" */
      snprintf(section, sizeof section, "%.*s", (int)(len > 0 ? len - 1 : 0), line);
      line = next;
      continue;
    }
    if (len > 6 && !strncmp(line, "    - ", 6)) { /* a list item: model.layers[i] */
      snprintf(x->path, sizeof x->path, "%s.layers[%d]", section, layer++);
      x->val = line + 6;
      x->len = len - 6;
    } else {
      const char *colon = memchr(line, ':', len);
      if (!colon) {
        line = next;
        continue;
      }
      const char *key = line + 2;
      snprintf(x->path, sizeof x->path, "%s.%.*s", section, (int)(colon - key), key);
      x->val = colon + 1;
      x->len = len - (size_t)(colon + 1 - line);
      /* The comment starts at the last "  # " (docs hold no such run). */
      for (size_t i = x->len; i >= 3; i--)
        if (!strncmp(x->val + i - 3, "  #", 3)) {
          x->len = i - 3;
          break;
        }
    }
    while (x->len && (x->val[0] == ' ')) x->val++, x->len--;
    while (x->len && x->val[x->len - 1] == ' ') x->len--;
    n++;
    line = next;
  }
  *out = e;
  return n;
}

static void add(char *out, size_t cap, size_t *used, const char *fmt, const char *path,
                const entry *a, const entry *b) {
  if (*used >= cap) return;
  int w = snprintf(out + *used, cap - *used, fmt, *used ? "; " : "", path, a ? (int)a->len : 6,
                   a ? a->val : "(none)", b ? (int)b->len : 6, b ? b->val : "(none)");
  if (w < 0) return;
  if (*used + (size_t)w >= cap && cap > 4) {
    /* Cut with "..." (whole UTF-8 characters). */
    size_t keep = cap - 4;
    while (keep > 0 && ((unsigned char)out[keep] & 0xC0) == 0x80) keep--;
    snprintf(out + keep, cap - keep, "...");
    *used = cap;
    return;
  }
  *used += (size_t)w;
}

int identity_config_diff(const char *a, const char *b, char *out, size_t cap) {
  entry *ea = NULL, *eb = NULL;
  int na = parse_emitted(a, &ea), nb = parse_emitted(b, &eb), diff = 0;
  size_t used = 0;
  if (cap) out[0] = '\0';
  if (na < 0 || nb < 0) {
    free(ea);
    free(eb);
    if (cap) snprintf(out, cap, "(out of memory comparing the configs)");
    return 1;
  }
  const char *fmt = "%s%s %.*s → %.*s";
  for (int i = 0; i < na; i++) {
    const entry *m = NULL;
    for (int j = 0; j < nb && !m; j++)
      if (!strcmp(ea[i].path, eb[j].path)) m = &eb[j];
    if (m && m->len == ea[i].len && !memcmp(m->val, ea[i].val, m->len)) continue;
    diff++;
    add(out, cap, &used, fmt, ea[i].path, &ea[i], m);
  }
  for (int j = 0; j < nb; j++) {
    int found = 0;
    for (int i = 0; i < na && !found; i++) found = !strcmp(ea[i].path, eb[j].path);
    if (found) continue;
    diff++;
    add(out, cap, &used, fmt, eb[j].path, NULL, &eb[j]);
  }
  free(ea);
  free(eb);
  return diff;
}
