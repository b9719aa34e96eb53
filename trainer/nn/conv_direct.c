/* conv_direct — a direct convolution for few input channels; see conv_direct.h. */
#include "conv_direct.h"

#include <string.h>

#include "clones.h"

/* Partial sums of a bias gradient: 64 floats, four AVX-512 vectors (or
 * more, narrower ones) whose additions do not wait for each other. */
enum { LANES = 64 };
/* Output channels the forward computes together, sharing each load of the
 * input; a block of OCB x 16 sums fits the vector registers. */
enum { OCB = 8, CHUNK = 16 };
/* Taps whose weight gradients the backward sums together (weights padded
 * with taps of no weight to a multiple, their sums dropped). */
enum { TB = 8 };

/* The padded geometry: planes of HP x WP, the output computed over NP
 * floats (OH rows of WP, rounded up to whole LANES), and the length of a
 * padded stack of C planes with room for the last tap's overrun. */
typedef struct {
  long HP, WP, NP, plane, stack;
} pad_geom;

static pad_geom geom(const ms_conv2d *g) {
  pad_geom p;
  p.HP = g->H + 2L * g->PH;
  p.WP = g->W + 2L * g->PW;
  p.NP = ((long)g->OH * p.WP + LANES - 1) / LANES * LANES; /* also whole CHUNKs */
  p.plane = p.HP * p.WP;
  /* The last tap of the last plane reads up to (C-1)*plane + (KH-1)*WP +
   * KW-1 + NP-1 = C*plane - OH*WP + NP + KW - 2. */
  p.stack = g->C * p.plane + (p.NP - (long)g->OH * p.WP) + g->KW + LANES;
  return p;
}

int conv_direct_supported(const ms_conv2d *g) {
  return g->SH == 1 && g->SW == 1 && g->C >= 1 && g->C < CONV_DIRECT_MAX_C;
}

long conv_direct_scratch_floats(const ms_conv2d *g) {
  pad_geom p = geom(g);
  long taps = (long)g->C * g->KH * g->KW;
  /* forward: xp, acc (OCB planes), the block's weights, the tap offsets
   * (longs, counted as two floats each, one float to align them);
   * backward: xp, dxp, dy, the partial sums, the tap offsets. */
  long fwd = p.stack + OCB * p.NP + taps * OCB + 1 + 2 * taps;
  long tpad = (taps + TB - 1) / TB * TB;
  long bwd = 2 * p.stack + p.NP + g->OC * (tpad * CHUNK + LANES) + 1 + 2 * tpad;
  return fwd > bwd ? fwd : bwd;
}

/* CHUNK floats as one value: GCC and Clang lower its arithmetic to the
 * widest vectors of the target (one AVX-512 register, two AVX2 ones, four
 * SSE ones), which plain loops of this shape do not reliably get. */
typedef float chunk __attribute__((vector_size(CHUNK * sizeof(float))));

/* acc[ob][i] = bb[ob] + the sum over the taps t of wb[t][ob] * xp[off[t] +
 * i], for OCB output channels and i < n (a multiple of CHUNK), the bias
 * first, then the taps in order. */
MS_CLONES static void fwd_block(float *restrict acc, long n, const float *restrict xp,
                                const float *restrict wb, const float *restrict bb,
                                const long *restrict off, int taps) {
  for (long i0 = 0; i0 < n; i0 += CHUNK) {
    chunk a[OCB];
    for (int ob = 0; ob < OCB; ob++) a[ob] = (chunk){0} + bb[ob];
    for (int t = 0; t < taps; t++) {
      chunk x;
      memcpy(&x, xp + off[t] + i0, sizeof x);
      for (int ob = 0; ob < OCB; ob++) a[ob] += wb[t * OCB + ob] * x;
    }
    for (int ob = 0; ob < OCB; ob++) memcpy(acc + ob * n + i0, &a[ob], sizeof a[ob]);
  }
}

/* y += a * x over n floats (the backward data's scatter, off the first
 * layer's path). */
MS_CLONES static void axpy(float *restrict y, const float *restrict x, float a, long n) {
  for (long i = 0; i < n; i++) y[i] += a * x[i];
}

/* For TB taps t: sums[t] (CHUNK partial sums) += dy[i] * xp[off[t] + i]
 * over i < n (a multiple of CHUNK), i = j (mod CHUNK) into sums[t][j]. One
 * load of dy serves TB taps, whose TB sums do not wait for each other. */
MS_CLONES static void dot_taps(float *restrict sums, const float *restrict dy,
                               const float *restrict xp, const long *restrict off, long n) {
  chunk s[TB], d, x;
  memcpy(s, sums, sizeof s);
  for (long i = 0; i < n; i += CHUNK) {
    memcpy(&d, dy + i, sizeof d);
    for (int t = 0; t < TB; t++) {
      memcpy(&x, xp + off[t] + i, sizeof x);
      s[t] += d * x;
    }
  }
  memcpy(sums, s, sizeof s);
}

/* lanes[j] += sum over i = j (mod LANES) of x[i]; n a multiple of LANES. */
MS_CLONES static void sum_lanes(float *restrict lanes, const float *restrict x, long n) {
  chunk s[LANES / CHUNK], u;
  memcpy(s, lanes, sizeof s);
  for (long i = 0; i < n; i += LANES)
    for (int k = 0; k < LANES / CHUNK; k++) {
      memcpy(&u, x + i + k * CHUNK, sizeof u);
      s[k] += u;
    }
  memcpy(lanes, s, sizeof s);
}

/* The interior of the padded stack xp (zero borders, written once by the
 * caller) from one sample img (C, H, W). */
static void pad_in(float *xp, const float *img, const ms_conv2d *g, const pad_geom *p) {
  for (int c = 0; c < g->C; c++)
    for (int h = 0; h < g->H; h++)
      memcpy(xp + c * p->plane + (h + g->PH) * p->WP + g->PW,
             img + ((long)c * g->H + h) * g->W, sizeof(float) * (size_t)g->W);
}

/* off[t], t < n: where tap t (input channel, kernel row, kernel column) of
 * the taps first reads in the padded stack; taps past `taps` (padding to a
 * multiple of TB) read the stack's start, any valid address. */
static void tap_offsets(long *off, int n, int taps, const ms_conv2d *g, const pad_geom *p) {
  const int KK = g->KH * g->KW;
  for (int t = 0; t < n; t++)
    off[t] = t < taps ? (t / KK) * p->plane + (t % KK / g->KW) * p->WP + t % g->KW : 0;
}

void conv_direct_forward(float *out, const float *inp, const float *w, const float *b,
                         const ms_conv2d *g, int B, float *scratch) {
  const pad_geom p = geom(g);
  const int KK = g->KH * g->KW, taps = g->C * KK;
  const long P = (long)g->OH * g->OW, in_sz = (long)g->C * g->H * g->W;
  float *xp = scratch, *acc = scratch + p.stack, *wb = acc + OCB * p.NP;
  /* The offsets on an 8-byte boundary (the scratch is malloc's). */
  long *off = (long *)(scratch + ((p.stack + OCB * p.NP + (long)taps * OCB + 1) & ~1L));
  tap_offsets(off, taps, taps, g, &p);
  memset(xp, 0, sizeof(float) * (size_t)p.stack);
  for (int s = 0; s < B; s++) {
    pad_in(xp, inp + s * in_sz, g, &p);
    for (int o0 = 0; o0 < g->OC; o0 += OCB) {
      const int nb = g->OC - o0 < OCB ? g->OC - o0 : OCB;
      /* The block's weights tap by tap; channels past OC weigh 0. */
      float bb[OCB];
      for (int ob = 0; ob < OCB; ob++) {
        bb[ob] = ob < nb ? b[o0 + ob] : 0.0f;
        for (int t = 0; t < taps; t++)
          wb[t * OCB + ob] = ob < nb ? w[(long)(o0 + ob) * taps + t] : 0.0f;
      }
      /* acc (OCB, OH, WP): its columns from OW on straddle two rows and
       * are dropped. */
      fwd_block(acc, p.NP, xp, wb, bb, off, taps);
      for (int ob = 0; ob < nb; ob++) {
        float *y = out + ((long)s * g->OC + o0 + ob) * P;
        for (int oh = 0; oh < g->OH; oh++)
          memcpy(y + (long)oh * g->OW, acc + ob * p.NP + oh * p.WP, sizeof(float) * (size_t)g->OW);
      }
    }
  }
}

/* dxp += the taps of output channel o's weights scattered from dy (OH, WP,
 * zero past OW): the adjoint of the forward's gather. */
static void scatter_taps(float *dxp, const float *dy, const float *w, int o, const ms_conv2d *g,
                         const pad_geom *p) {
  const int KK = g->KH * g->KW;
  for (int c = 0; c < g->C; c++)
    for (int k = 0; k < KK; k++)
      axpy(dxp + c * p->plane + (k / g->KW) * p->WP + k % g->KW, dy,
           w[((long)o * g->C + c) * KK + k], p->NP);
}

void conv_direct_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const ms_conv2d *g, int B, float *scratch) {
  const pad_geom p = geom(g);
  const int KK = g->KH * g->KW, CKK = g->C * KK, tpad = (CKK + TB - 1) / TB * TB;
  const long P = (long)g->OH * g->OW, in_sz = (long)g->C * g->H * g->W;
  float *xp = scratch, *dxp = scratch + p.stack, *dy = dxp + p.stack, *lw = dy + p.NP;
  float *lb = lw + (long)g->OC * tpad * CHUNK;
  long *off = (long *)(scratch + (((lb - scratch) + (long)g->OC * LANES + 1) & ~1L));
  tap_offsets(off, tpad, CKK, g, &p);
  memset(xp, 0, sizeof(float) * (size_t)p.stack);
  memset(dy, 0, sizeof(float) * (size_t)p.NP);
  memset(lw, 0, sizeof(float) * (size_t)(g->OC * (tpad * CHUNK + LANES)));
  for (int s = 0; s < B; s++) {
    pad_in(xp, inp + s * in_sz, g, &p);
    if (dinp) memset(dxp, 0, sizeof(float) * (size_t)p.stack);
    for (int o = 0; o < g->OC; o++) {
      /* dy (OH, WP): this sample's output gradient, zero past OW, so that
       * the columns the forward dropped add nothing. */
      const float *d = dout + ((long)s * g->OC + o) * P;
      for (int oh = 0; oh < g->OH; oh++)
        memcpy(dy + oh * p.WP, d + (long)oh * g->OW, sizeof(float) * (size_t)g->OW);
      sum_lanes(lb + (long)o * LANES, dy, p.NP);
      for (int t0 = 0; t0 < tpad; t0 += TB)
        dot_taps(lw + ((long)o * tpad + t0) * CHUNK, dy, xp, off + t0, p.NP);
      if (dinp) scatter_taps(dxp, dy, w, o, g, &p);
    }
    for (int c = 0; dinp && c < g->C; c++)
      for (int h = 0; h < g->H; h++)
        memcpy(dinp + s * in_sz + ((long)c * g->H + h) * g->W,
               dxp + c * p.plane + (h + g->PH) * p.WP + g->PW, sizeof(float) * (size_t)g->W);
  }
  /* The partial sums, added in a fixed order. */
  for (int o = 0; o < g->OC; o++) {
    for (int t = 0; t < CKK; t++) {
      const float *l = lw + ((long)o * tpad + t) * CHUNK;
      float sum = 0.0f;
      for (int j = 0; j < CHUNK; j++) sum += l[j];
      dw[(long)o * CKK + t] = sum;
    }
    const float *l = lb + (long)o * LANES;
    float sum = 0.0f;
    for (int j = 0; j < LANES; j++) sum += l[j];
    db[o] = sum;
  }
}
