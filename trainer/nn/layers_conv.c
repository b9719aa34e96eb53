/* layers_conv — 2-d convolution (im2col + sgemm) and pooling; see layers.h. */
#include "layers.h"

#include <cblas.h>
#include <string.h>

int conv2d_geometry(ms_conv2d *g) {
  if (g->C < 1 || g->H < 1 || g->W < 1 || g->KH < 1 || g->KW < 1 || g->SH < 1 || g->SW < 1 ||
      g->PH < 0 || g->PW < 0)
    return -1;
  int hspan = g->H + 2 * g->PH - g->KH, wspan = g->W + 2 * g->PW - g->KW;
  if (hspan < 0 || wspan < 0) return -1;
  g->OH = hspan / g->SH + 1;
  g->OW = wspan / g->SW + 1;
  return 0;
}

/* Scratch per group is at most this many floats (8 MiB), so that the
 * im2col matrix of a group stays near the caches. */
#define GROUP_FLOATS (1L << 21)

int conv2d_group(const ms_conv2d *g, int B) {
  long per = ((long)g->C * g->KH * g->KW + g->OC) * g->OH * g->OW;
  long n = GROUP_FLOATS / (per > 0 ? per : 1);
  if (n > B) n = B;
  return n < 1 ? 1 : (int)n;
}

long conv2d_scratch_floats(const ms_conv2d *g, int B) {
  return ((long)g->C * g->KH * g->KW + g->OC) * g->OH * g->OW * conv2d_group(g, B);
}

/* The output columns [*lo, *hi) whose input column ow*SW - PW + kw lies
 * inside [0, W); the others read the zero padding. */
static void valid_cols(const ms_conv2d *g, int kw, int *lo, int *hi) {
  int off = kw - g->PW; /* iw = ow * SW + off */
  int a = off >= 0 ? 0 : (-off + g->SW - 1) / g->SW;
  int b = g->W - off <= 0 ? 0 : (g->W - off - 1) / g->SW + 1;
  *lo = a < g->OW ? a : g->OW;
  *hi = b < g->OW ? b : g->OW;
  if (*hi < *lo) *hi = *lo;
}

/* col (C*KH*KW, OH*OW) from one sample img (C, H, W): row (c, kh, kw), column
 * (oh, ow) holds img[c][oh*SH - PH + kh][ow*SW - PW + kw], or 0 in the
 * padding. ld is the row stride of col (OH*OW for one sample; larger when
 * several samples' columns sit side by side). */
static void im2col(float *col, long ld, const float *img, const ms_conv2d *g) {
  for (int c = 0; c < g->C; c++)
    for (int kh = 0; kh < g->KH; kh++)
      for (int kw = 0; kw < g->KW; kw++) {
        float *row = col + ((long)(c * g->KH + kh) * g->KW + kw) * ld;
        const float *plane = img + (long)c * g->H * g->W;
        int lo, hi, off = kw - g->PW;
        valid_cols(g, kw, &lo, &hi);
        for (int oh = 0; oh < g->OH; oh++) {
          int ih = oh * g->SH - g->PH + kh;
          float *dst = row + (long)oh * g->OW;
          if (ih < 0 || ih >= g->H) {
            memset(dst, 0, sizeof(float) * (size_t)g->OW);
            continue;
          }
          const float *src = plane + (long)ih * g->W + off;
          for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
          if (g->SW == 1)
            memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
          else
            for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * g->SW];
          for (int ow = hi; ow < g->OW; ow++) dst[ow] = 0.0f;
        }
      }
}

/* The adjoint of im2col: img (C, H, W) = 0, then every col entry added back
 * to the input pixel it was copied from (padding entries are dropped). */
static void col2im(float *img, const float *col, long ld, const ms_conv2d *g) {
  memset(img, 0, sizeof(float) * (size_t)g->C * (size_t)g->H * (size_t)g->W);
  for (int c = 0; c < g->C; c++)
    for (int kh = 0; kh < g->KH; kh++)
      for (int kw = 0; kw < g->KW; kw++) {
        const float *row = col + ((long)(c * g->KH + kh) * g->KW + kw) * ld;
        float *plane = img + (long)c * g->H * g->W;
        int lo, hi, off = kw - g->PW;
        valid_cols(g, kw, &lo, &hi);
        for (int oh = 0; oh < g->OH; oh++) {
          int ih = oh * g->SH - g->PH + kh;
          if (ih < 0 || ih >= g->H) continue;
          const float *src = row + (long)oh * g->OW;
          float *dst = plane + (long)ih * g->W + off;
          for (int ow = lo; ow < hi; ow++) dst[ow * g->SW] += src[ow];
        }
      }
}

void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const ms_conv2d *g, int B, float *scratch) {
  const int P = g->OH * g->OW, CKK = g->C * g->KH * g->KW, G = conv2d_group(g, B);
  const long in_sz = (long)g->C * g->H * g->W, out_sz = (long)g->OC * P;
  for (int s0 = 0; s0 < B; s0 += G) {
    const int n = B - s0 < G ? B - s0 : G;
    const long ld = (long)n * P;
    float *col = scratch, *y = scratch + (long)CKK * ld;
    for (int j = 0; j < n; j++) im2col(col + (long)j * P, ld, inp + (s0 + j) * in_sz, g);
    /* y (OC, n*P) = w (OC, CKK) @ col (CKK, n*P): one sgemm for the group */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, (int)ld, CKK, 1.0f, w, CKK, col,
                (int)ld, 0.0f, y, (int)ld);
    /* Back to (n, OC, P), adding the bias. */
    for (int j = 0; j < n; j++)
      for (int o = 0; o < g->OC; o++) {
        const float *src = y + (long)o * ld + (long)j * P;
        float *dst = out + (s0 + j) * out_sz + (long)o * P;
        const float bo = b[o];
        for (int p = 0; p < P; p++) dst[p] = src[p] + bo;
      }
  }
}

void conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, const ms_conv2d *g, int B, float *scratch) {
  const int P = g->OH * g->OW, CKK = g->C * g->KH * g->KW, G = conv2d_group(g, B);
  const long in_sz = (long)g->C * g->H * g->W, out_sz = (long)g->OC * P;
  for (int o = 0; o < g->OC; o++) db[o] = 0.0f;
  if (B == 0) memset(dw, 0, sizeof(float) * (size_t)g->OC * (size_t)CKK);
  for (int s0 = 0; s0 < B; s0 += G) {
    const int n = B - s0 < G ? B - s0 : G;
    const long ld = (long)n * P;
    float *col = scratch, *dy = scratch + (long)CKK * ld;
    /* dy (OC, n*P) from dout (n, OC, P); db = its row sums. */
    for (int o = 0; o < g->OC; o++) {
      float s = 0.0f;
      for (int j = 0; j < n; j++) {
        const float *src = dout + (s0 + j) * out_sz + (long)o * P;
        float *dst = dy + (long)o * ld + (long)j * P;
        for (int p = 0; p < P; p++) s += dst[p] = src[p];
      }
      db[o] += s;
    }
    for (int j = 0; j < n; j++) im2col(col + (long)j * P, ld, inp + (s0 + j) * in_sz, g);
    /* dw (OC, CKK) (+)= dy (OC, n*P) @ col^T (n*P, CKK); the first group
     * overwrites, the rest accumulate. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->OC, CKK, (int)ld, 1.0f, dy, (int)ld, col,
                (int)ld, s0 == 0 ? 0.0f : 1.0f, dw, CKK);
    if (dinp) {
      /* dcol (CKK, n*P) = w^T (CKK, OC) @ dy (OC, n*P), into col. */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)ld, g->OC, 1.0f, w, CKK, dy,
                  (int)ld, 0.0f, col, (int)ld);
      for (int j = 0; j < n; j++) col2im(dinp + (s0 + j) * in_sz, col + (long)j * P, ld, g);
    }
  }
}

/* 1 for the 2x2 windows at stride 2 of most CNNs, which have a loop of
 * their own. */
static int pool_2x2(const ms_conv2d *g) {
  return g->KH == 2 && g->KW == 2 && g->SH == 2 && g->SW == 2;
}

/* maxpool2d_forward of one plane, 2x2 windows at stride 2: the same
 * comparisons in the same order (so the same maximum, the first in
 * row-major order on ties, NaN as the generic loop treats it), with the
 * argmax chosen by masks instead of a branch per pixel, which mispredicts
 * on activations. Not in clones.h: rows of 14 or 7 outputs leave wide
 * vectors mostly in their scalar epilogues, slower than SSE here. */
static void maxpool_2x2_plane(float *restrict y, int32_t *restrict am, const float *restrict x,
                              const ms_conv2d *g) {
  const int W = g->W;
  for (int oh = 0; oh < g->OH; oh++) {
    const float *r0 = x + (long)2 * oh * W, *r1 = r0 + W;
    for (int ow = 0; ow < g->OW; ow++) {
      const int32_t i0 = 2 * oh * W + 2 * ow;
      const float b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
      float m = r0[2 * ow];
      int32_t best = i0, t;
      t = -(int32_t)(b > m); /* all ones when b wins */
      best ^= (best ^ (i0 + 1)) & t;
      m = b > m ? b : m;
      t = -(int32_t)(c > m);
      best ^= (best ^ (i0 + W)) & t;
      m = c > m ? c : m;
      t = -(int32_t)(d > m);
      best ^= (best ^ (i0 + W + 1)) & t;
      m = d > m ? d : m;
      y[oh * g->OW + ow] = m;
      am[oh * g->OW + ow] = best;
    }
  }
}

void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const ms_conv2d *g, int B) {
  const long planes = (long)B * g->C, in_sz = (long)g->H * g->W, out_sz = (long)g->OH * g->OW;
  for (long pl = 0; pl < planes && pool_2x2(g); pl++)
    maxpool_2x2_plane(out + pl * out_sz, argmax + pl * out_sz, inp + pl * in_sz, g);
  for (long pl = 0; pl < planes && !pool_2x2(g); pl++) {
    const float *x = inp + pl * in_sz;
    float *y = out + pl * out_sz;
    int32_t *am = argmax + pl * out_sz;
    for (int oh = 0; oh < g->OH; oh++)
      for (int ow = 0; ow < g->OW; ow++) {
        int h0 = oh * g->SH, w0 = ow * g->SW;
        int best = h0 * g->W + w0;
        float m = x[best];
        for (int kh = 0; kh < g->KH; kh++)
          for (int kw = 0; kw < g->KW; kw++) {
            int idx = (h0 + kh) * g->W + w0 + kw;
            if (x[idx] > m) m = x[idx], best = idx;
          }
        y[oh * g->OW + ow] = m;
        am[oh * g->OW + ow] = best;
      }
  }
}

void maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, const ms_conv2d *g,
                        int B) {
  const long planes = (long)B * g->C, in_sz = (long)g->H * g->W, out_sz = (long)g->OH * g->OW;
  memset(dinp, 0, sizeof(float) * (size_t)(planes * in_sz));
  for (long pl = 0; pl < planes; pl++) {
    float *dx = dinp + pl * in_sz;
    const float *dy = dout + pl * out_sz;
    const int32_t *am = argmax + pl * out_sz;
    for (long k = 0; k < out_sz; k++) dx[am[k]] += dy[k];
  }
}

void avgpool2d_forward(float *out, const float *inp, const ms_conv2d *g, int B) {
  const long planes = (long)B * g->C, in_sz = (long)g->H * g->W, out_sz = (long)g->OH * g->OW;
  const float inv = 1.0f / (float)(g->KH * g->KW);
  for (long pl = 0; pl < planes; pl++) {
    const float *x = inp + pl * in_sz;
    float *y = out + pl * out_sz;
    for (int oh = 0; oh < g->OH; oh++)
      for (int ow = 0; ow < g->OW; ow++) {
        float s = 0.0f;
        for (int kh = 0; kh < g->KH; kh++)
          for (int kw = 0; kw < g->KW; kw++) s += x[(oh * g->SH + kh) * g->W + ow * g->SW + kw];
        y[oh * g->OW + ow] = s * inv;
      }
  }
}

void avgpool2d_backward(float *dinp, const float *dout, const ms_conv2d *g, int B) {
  const long planes = (long)B * g->C, in_sz = (long)g->H * g->W, out_sz = (long)g->OH * g->OW;
  const float inv = 1.0f / (float)(g->KH * g->KW);
  memset(dinp, 0, sizeof(float) * (size_t)(planes * in_sz));
  for (long pl = 0; pl < planes; pl++) {
    float *dx = dinp + pl * in_sz;
    const float *dy = dout + pl * out_sz;
    for (int oh = 0; oh < g->OH; oh++)
      for (int ow = 0; ow < g->OW; ow++) {
        float d = dy[oh * g->OW + ow] * inv;
        for (int kh = 0; kh < g->KH; kh++)
          for (int kw = 0; kw < g->KW; kw++) dx[(oh * g->SH + kh) * g->W + ow * g->SW + kw] += d;
      }
  }
}
