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

long conv2d_scratch_floats(const ms_conv2d *g) {
  return (long)g->C * g->KH * g->KW * g->OH * g->OW;
}

/* col (C*KH*KW, OH*OW) from one sample img (C, H, W): row (c, kh, kw), column
 * (oh, ow) holds img[c][oh*SH - PH + kh][ow*SW - PW + kw], or 0 in the
 * padding. */
static void im2col(float *col, const float *img, const ms_conv2d *g) {
  const int P = g->OH * g->OW;
  for (int c = 0; c < g->C; c++)
    for (int kh = 0; kh < g->KH; kh++)
      for (int kw = 0; kw < g->KW; kw++) {
        float *row = col + ((long)(c * g->KH + kh) * g->KW + kw) * P;
        const float *plane = img + (long)c * g->H * g->W;
        for (int oh = 0; oh < g->OH; oh++) {
          int ih = oh * g->SH - g->PH + kh;
          float *dst = row + (long)oh * g->OW;
          if (ih < 0 || ih >= g->H) {
            memset(dst, 0, sizeof(float) * (size_t)g->OW);
            continue;
          }
          const float *src = plane + (long)ih * g->W;
          for (int ow = 0; ow < g->OW; ow++) {
            int iw = ow * g->SW - g->PW + kw;
            dst[ow] = (iw >= 0 && iw < g->W) ? src[iw] : 0.0f;
          }
        }
      }
}

/* The adjoint of im2col: img (C, H, W) = 0, then every col entry added back
 * to the input pixel it was copied from (padding entries are dropped). */
static void col2im(float *img, const float *col, const ms_conv2d *g) {
  const int P = g->OH * g->OW;
  memset(img, 0, sizeof(float) * (size_t)g->C * (size_t)g->H * (size_t)g->W);
  for (int c = 0; c < g->C; c++)
    for (int kh = 0; kh < g->KH; kh++)
      for (int kw = 0; kw < g->KW; kw++) {
        const float *row = col + ((long)(c * g->KH + kh) * g->KW + kw) * P;
        float *plane = img + (long)c * g->H * g->W;
        for (int oh = 0; oh < g->OH; oh++) {
          int ih = oh * g->SH - g->PH + kh;
          if (ih < 0 || ih >= g->H) continue;
          const float *src = row + (long)oh * g->OW;
          float *dst = plane + (long)ih * g->W;
          for (int ow = 0; ow < g->OW; ow++) {
            int iw = ow * g->SW - g->PW + kw;
            if (iw >= 0 && iw < g->W) dst[iw] += src[ow];
          }
        }
      }
}

void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const ms_conv2d *g, int B, float *scratch) {
  const int P = g->OH * g->OW, CKK = g->C * g->KH * g->KW;
  const long in_sz = (long)g->C * g->H * g->W, out_sz = (long)g->OC * P;
  for (int i = 0; i < B; i++) {
    const float *x = inp + i * in_sz;
    float *y = out + i * out_sz;
    im2col(scratch, x, g);
    /* Seed each output plane with its bias, then accumulate the product. */
    for (int o = 0; o < g->OC; o++)
      for (int p = 0; p < P; p++) y[(long)o * P + p] = b[o];
    /* y (OC, P) += w (OC, CKK) @ col (CKK, P) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->OC, P, CKK, 1.0f, w, CKK, scratch, P,
                1.0f, y, P);
  }
}

void conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, const ms_conv2d *g, int B, float *scratch) {
  const int P = g->OH * g->OW, CKK = g->C * g->KH * g->KW;
  const long in_sz = (long)g->C * g->H * g->W, out_sz = (long)g->OC * P;
  for (int o = 0; o < g->OC; o++) db[o] = 0.0f;
  if (B == 0) memset(dw, 0, sizeof(float) * (size_t)g->OC * (size_t)CKK);
  for (int i = 0; i < B; i++) {
    const float *dy = dout + i * out_sz;
    for (int o = 0; o < g->OC; o++) {
      const float *row = dy + (long)o * P;
      float s = 0.0f;
      for (int p = 0; p < P; p++) s += row[p];
      db[o] += s;
    }
    im2col(scratch, inp + i * in_sz, g);
    /* dw (OC, CKK) (+)= dy (OC, P) @ col^T (P, CKK); the first sample
     * overwrites, the rest accumulate. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->OC, CKK, P, 1.0f, dy, P, scratch, P,
                i == 0 ? 0.0f : 1.0f, dw, CKK);
    if (dinp) {
      /* dcol (CKK, P) = w^T (CKK, OC) @ dy (OC, P), into the same scratch. */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, P, g->OC, 1.0f, w, CKK, dy, P, 0.0f,
                  scratch, P);
      col2im(dinp + i * in_sz, scratch, g);
    }
  }
}

void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const ms_conv2d *g, int B) {
  const long planes = (long)B * g->C, in_sz = (long)g->H * g->W, out_sz = (long)g->OH * g->OW;
  for (long pl = 0; pl < planes; pl++) {
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
