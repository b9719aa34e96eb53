/* plot — learning curves drawn with cairo (plot.h). */
#include "plot.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ms_error.h"
#include "runlog.h"

typedef struct {
  char label[96];
  runlog log;
} plot_run;

typedef struct {
  int n;
  plot_run run[PLOT_MAX_RUNS];
  int w, h;
} plot_set;

/* A panel: its title and the series it draws (train solid, eval dashed). */
typedef struct {
  const char *title;
  runlog_which train, eval; /* eval RUNLOG_N_SERIES: none */
} panel_spec;

static const panel_spec panels[3] = {
    {"loss", RUNLOG_TRAIN_LOSS, RUNLOG_EVAL_LOSS},
    {"accuracy", RUNLOG_TRAIN_ACC, RUNLOG_EVAL_ACC},
    {"learning rate", RUNLOG_LR, RUNLOG_N_SERIES}};

/* Colours of the runs: the ten of matplotlib's "tab10", easy to tell apart. */
static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

/* Data to picture: [x0, x1] x [y0, y1] of the data onto the frame. */
typedef struct {
  double x0, x1, y0, y1;    /* data */
  double fx0, fx1, fy0, fy1; /* frame: left, right, top, bottom */
  double xstep, ystep;      /* tick spacing */
} axes;

static double px(const axes *a, double x) {
  return a->fx0 + (x - a->x0) / (a->x1 - a->x0) * (a->fx1 - a->fx0);
}
static double py(const axes *a, double y) {
  return a->fy1 - (y - a->y0) / (a->y1 - a->y0) * (a->fy1 - a->fy0);
}

/* 1, 2 or 5 times a power of ten, at least raw. */
static double nice_step(double raw) {
  double p = pow(10.0, floor(log10(raw))), f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* [lo, hi] widened to whole ticks, about 5 of them. */
static void nice_range(double *lo, double *hi, double *step) {
  if (!(*hi > *lo)) {
    double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1.0;
    *lo -= d;
    *hi += d;
  }
  *step = nice_step((*hi - *lo) / 5);
  *lo = floor(*lo / *step + 1e-9) * *step;
  *hi = ceil(*hi / *step - 1e-9) * *step;
}

/* The data range of a panel over every run. @return 0 when it has no data. */
static int panel_range(const plot_set *ps, const panel_spec *p, axes *a) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (int r = 0; r < ps->n; r++) {
    runlog_which ws[2] = {p->train, p->eval};
    for (int k = 0; k < 2; k++) {
      if (ws[k] == RUNLOG_N_SERIES) continue;
      const runlog_series *s = &ps->run[r].log.s[ws[k]];
      for (size_t i = 0; i < s->n; i++) {
        if (!isfinite(s->v[i])) continue;
        xl = fmin(xl, (double)s->step[i]), xh = fmax(xh, (double)s->step[i]);
        yl = fmin(yl, s->v[i]), yh = fmax(yh, s->v[i]);
      }
    }
  }
  if (!(xl <= xh)) return 0;
  if (xl > 0) xl = 0; /* steps from the start of training */
  nice_range(&xl, &xh, &a->xstep);
  nice_range(&yl, &yh, &a->ystep);
  a->x0 = xl, a->x1 = xh, a->y0 = yl, a->y1 = yh;
  return 1;
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - ax * e.width - e.x_bearing, y - ay * e.height - e.y_bearing);
  cairo_show_text(cr, s);
}

/* A tick label: integers as such, others with 3 significant digits. */
static void tick_label(double v, double step, char *out, size_t n) {
  if (fabs(v) < step * 1e-6) v = 0;
  if (step >= 1 && fabs(v) < 1e15) snprintf(out, n, "%.0f", v);
  else snprintf(out, n, "%.3g", v);
}

static void draw_axes(cairo_t *cr, const axes *a, const char *title) {
  char t[48];
  cairo_set_line_width(cr, 1.0);
  cairo_set_font_size(cr, 11);
  for (double x = a->x0; x <= a->x1 + a->xstep * 1e-6; x += a->xstep) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, px(a, x), a->fy0), cairo_line_to(cr, px(a, x), a->fy1);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    tick_label(x, a->xstep, t, sizeof t);
    text_at(cr, px(a, x), a->fy1 + 6, t, 0.5, 0);
  }
  for (double y = a->y0; y <= a->y1 + a->ystep * 1e-6; y += a->ystep) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, a->fx0, py(a, y)), cairo_line_to(cr, a->fx1, py(a, y));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    tick_label(y, a->ystep, t, sizeof t);
    text_at(cr, a->fx0 - 6, py(a, y), t, 1, 0.5);
  }
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, a->fx0, a->fy0, a->fx1 - a->fx0, a->fy1 - a->fy0);
  cairo_stroke(cr);
  text_at(cr, (a->fx0 + a->fx1) / 2, a->fy1 + 22, "step", 0.5, 0);
  /* The title on a baseline, so that titles with and without descenders
   * line up. */
  cairo_text_extents_t e;
  cairo_set_font_size(cr, 14);
  cairo_text_extents(cr, title, &e);
  cairo_move_to(cr, (a->fx0 + a->fx1) / 2 - e.width / 2 - e.x_bearing, a->fy0 - 12);
  cairo_show_text(cr, title);
}

/* One series as a polyline (a gap at each NaN); eval ones dashed, with a
 * dot at every record. */
static void draw_series(cairo_t *cr, const axes *a, const runlog_series *s, int eval) {
  int open = 0;
  double dash[2] = {6, 3};
  cairo_set_line_width(cr, eval ? 1.5 : 1.2);
  cairo_set_dash(cr, dash, eval ? 2 : 0, 0);
  for (size_t i = 0; i < s->n; i++) {
    if (!isfinite(s->v[i])) {
      open = 0;
      continue;
    }
    double x = px(a, (double)s->step[i]), y = py(a, s->v[i]);
    if (open) cairo_line_to(cr, x, y);
    else cairo_move_to(cr, x, y);
    open = 1;
  }
  cairo_stroke(cr);
  cairo_set_dash(cr, NULL, 0, 0);
  for (size_t i = 0; eval && i < s->n; i++) {
    if (!isfinite(s->v[i])) continue;
    cairo_new_sub_path(cr);
    cairo_arc(cr, px(a, (double)s->step[i]), py(a, s->v[i]), 2.5, 0, 6.283185307179586);
    cairo_fill(cr);
  }
}

static void draw_panel(cairo_t *cr, const plot_set *ps, int k, double cx, double cy, double cw,
                       double ch, FILE *out) {
  const panel_spec *p = &panels[k];
  axes a = {.fx0 = cx + 72, .fx1 = cx + cw - 24, .fy0 = cy + 36, .fy1 = cy + ch - 48};
  if (!panel_range(ps, p, &a)) {
    cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
    cairo_set_font_size(cr, 13);
    char t[80];
    snprintf(t, sizeof t, "no %s logged", p->title);
    text_at(cr, cx + cw / 2, cy + ch / 2, t, 0.5, 0.5);
    fprintf(out, "panel %s: no data\n", p->title);
    return;
  }
  draw_axes(cr, &a, p->title);
  for (int r = 0; r < ps->n; r++) {
    const double *c = palette[r % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    draw_series(cr, &a, &ps->run[r].log.s[p->train], 0);
    if (p->eval != RUNLOG_N_SERIES) draw_series(cr, &a, &ps->run[r].log.s[p->eval], 1);
  }
  fprintf(out, "panel %s: steps [%.9g, %.9g] -> x [%.9g, %.9g]; values [%.9g, %.9g] -> y [%.9g, %.9g]\n",
          p->title, a.x0, a.x1, a.fx0, a.fx1, a.y0, a.y1, a.fy1, a.fy0);
}

/* The fourth cell: a colour per run, then the line styles. */
static void draw_legend(cairo_t *cr, const plot_set *ps, double cx, double cy, double cw,
                        double ch) {
  double row = fmin(20, (ch - 80) / (ps->n + 3)), x = cx + 72, y = cy + 48;
  double dash[2] = {6, 3};
  cairo_set_font_size(cr, fmin(12, row * 0.7));
  for (int r = 0; r < ps->n; r++, y += row) {
    const double *c = palette[r % 10];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_rectangle(cr, x, y - row * 0.3, 24, row * 0.5);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, x + 32, y, ps->run[r].label, 0, 0.5);
  }
  y += row;
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  for (int k = 0; k < 2; k++, y += row) {
    cairo_set_line_width(cr, 1.5);
    cairo_set_dash(cr, dash, k ? 2 : 0, 0);
    cairo_move_to(cr, x, y), cairo_line_to(cr, x + 24, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    text_at(cr, x + 32, y, k ? "evaluation (test set), a dot per evaluation" : "training (log interval)",
            0, 0.5);
  }
  (void)cw;
}

static void draw(cairo_t *cr, const plot_set *ps, FILE *out) {
  double cw = ps->w / 2.0, ch = ps->h / 2.0;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (int k = 0; k < 3; k++) draw_panel(cr, ps, k, (k % 2) * cw, (k / 2) * ch, cw, ch, out);
  draw_legend(cr, ps, cw, ch, cw, ch);
}

/* Draws onto a PNG or an SVG surface written to tmp. @return 0 or MS_EIO. */
static int render(const plot_set *ps, const char *tmp, int svg, FILE *out) {
  cairo_surface_t *s = svg ? cairo_svg_surface_create(tmp, ps->w, ps->h)
                           : cairo_image_surface_create(CAIRO_FORMAT_RGB24, ps->w, ps->h);
  cairo_t *cr = cairo_create(s);
  draw(cr, ps, out);
  cairo_status_t st = cairo_status(cr);
  cairo_destroy(cr);
  if (!svg && st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(s, tmp);
  cairo_surface_finish(s);
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
  cairo_surface_destroy(s);
  if (st != CAIRO_STATUS_SUCCESS)
    return ms_error_set(MS_EIO, "cannot write '%s': %s", tmp, cairo_status_to_string(st));
  return 0;
}

/* A run's label: its directory's last component. */
static void label_of(const char *dir, char *out, size_t n) {
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/') len--;
  size_t b = len;
  while (b > 0 && dir[b - 1] != '/') b--;
  snprintf(out, n, "%.*s", (int)(len - b), dir + b);
}

static int add_run(plot_set *ps, const char *dir, const char *label) {
  char p[PATH_MAX * 2];
  if (ps->n == PLOT_MAX_RUNS)
    return ms_error_set(MS_EUSAGE, "plot: more than %d runs", PLOT_MAX_RUNS);
  plot_run *r = &ps->run[ps->n];
  snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
  int rc = runlog_read(p, &r->log);
  if (rc) return rc;
  ps->n++;
  if (r->log.s[RUNLOG_TRAIN_LOSS].n == 0)
    return ms_error_set(MS_EUSAGE, "plot: '%s' holds no training records", p);
  snprintf(r->label, sizeof r->label, "%s", label);
  return 0;
}

/* A run directory, or a sweep's (trials.tsv: one run per trial that
 * has started; the label is "sweep/trial-NNN"). */
static int add_dir(plot_set *ps, const char *dir) {
  char p[PATH_MAX + 32], label[96], sweep[64];
  if (strlen(dir) > PATH_MAX - 64) return ms_error_set(MS_EUSAGE, "plot: path too long: '%s'", dir);
  snprintf(p, sizeof p, "%s/trials.tsv", dir);
  FILE *f = access(p, F_OK) == 0 ? fopen(p, "r") : NULL;
  label_of(dir, sweep, sizeof sweep);
  if (!f) return add_run(ps, dir, sweep);
  char line[256];
  int rc = 0, first = 1;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\t\n")] = '\0';
    if (first || strncmp(line, "trial-", 6) || strchr(line, '/')) {
      first = 0;
      continue;
    }
    snprintf(p, sizeof p, "%s/%s/metrics.jsonl", dir, line);
    if (access(p, F_OK) != 0) continue; /* not started */
    snprintf(p, sizeof p, "%s/%s", dir, line);
    snprintf(label, sizeof label, "%s/%.31s", sweep, line);
    rc = add_run(ps, p, label);
  }
  fclose(f);
  return rc;
}

static int parse_size(const char *s, int *w, int *h) {
  char *end;
  long a = strtol(s, &end, 10), b = *end == 'x' ? strtol(end + 1, &end, 10) : 0;
  if (*end || a < 320 || b < 240 || a > 8192 || b > 8192) return -1;
  *w = (int)a, *h = (int)b;
  return 0;
}

int plot_main(int argc, char **argv, const char *usage, FILE *out) {
  const char *dest = NULL, *dirs[PLOT_MAX_RUNS];
  int n_dirs = 0, rc = 0;
  plot_set *ps = calloc(1, sizeof *ps);
  if (!ps) return ms_error_set(MS_ENOMEM, "out of memory");
  ps->w = 1200, ps->h = 800;
  for (int i = 0; i < argc && rc == 0; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, out);
      goto out;
    } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
      dest = argv[++i];
    } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
      if (parse_size(argv[++i], &ps->w, &ps->h))
        rc = ms_error_set(MS_EUSAGE, "plot: --size takes WxH, 320x240 to 8192x8192, found '%s'",
                          argv[i]);
    } else if (argv[i][0] != '-' && n_dirs < PLOT_MAX_RUNS) {
      dirs[n_dirs++] = argv[i];
    } else {
      rc = ms_error_set(MS_EUSAGE, "plot: unexpected argument '%s' (see 'midscale help plot')",
                        argv[i]);
    }
  }
  size_t dl = dest ? strlen(dest) : 0;
  int svg = dl > 4 && !strcasecmp(dest + dl - 4, ".svg");
  if (rc == 0 && (!n_dirs || !dest))
    rc = ms_error_set(MS_EUSAGE, "plot needs RUN_DIR... and -o FILE.png or FILE.svg");
  else if (rc == 0 && !svg && !(dl > 4 && !strcasecmp(dest + dl - 4, ".png")))
    rc = ms_error_set(MS_EUSAGE, "plot: -o takes a .png or .svg file, found '%s'", dest);
  for (int i = 0; rc == 0 && i < n_dirs; i++) rc = add_dir(ps, dirs[i]);
  if (rc == 0 && ps->n == 0) rc = ms_error_set(MS_EUSAGE, "plot: no run has started yet");
  if (rc == 0) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", dest);
    rc = render(ps, tmp, svg, out);
    if (rc == 0 && rename(tmp, dest) != 0)
      rc = ms_error_set(MS_EIO, "cannot write '%s': %s", dest, strerror(errno));
    if (rc) unlink(tmp);
    else fprintf(out, "wrote %s (%d run%s, %dx%d)\n", dest, ps->n, ps->n == 1 ? "" : "s", ps->w, ps->h);
  }
out:
  for (int i = 0; i < ps->n; i++) runlog_free(&ps->run[i].log);
  free(ps);
  return rc;
}
