/* layers_dump — runs the kernels of layers.h / kernels.h and the optimizers
 * of optim.h on fixed, deterministic inputs and writes every input, weight,
 * output and gradient into one uncompressed safetensors file, for
 * tests/tools/torch_crosscheck.py to recompute in PyTorch.
 *
 * usage: layers_dump OUT.safetensors
 *
 * Contents (names are the tensors' keys):
 *   net.*      conv2d(stride 2, pad 1) -> relu -> maxpool -> flatten -> dense,
 *              then for each loss (xent_smooth, bce, mse, mae) the loss and
 *              the gradients of every weight and of the input
 *   unit.*     each activation, softmax, layer norm, average pooling and
 *              dropout on its own: input, upstream gradient, output, dinp
 *   topk.*     top-k counts of the logits
 *   opt.<run>.* 20 steps of an optimizer on a fixed gradient sequence: the
 *              initial params, the gradients, the lr of each step and the
 *              params after each step
 *   bf16.*     dense -> relu -> dense through oneDNN in bf16 mixed precision
 *              (dnn.h): input, weights, upstream gradient, outputs, and the
 *              gradients of the input and every weight; bf16.conv.* the same
 *              for one strided, padded convolution
 * Exit status 0, or 1 with a message on stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnn.h"
#include "kernels.h"
#include "layers.h"
#include "optim.h"
#include "sampler.h"

/* ---- a tiny safetensors writer ------------------------------------------------- */

enum { MAX_TENSORS = 256 };
typedef struct {
  char name[64];
  const char *dtype; /* "F32", "F64", "I32" */
  int ndim;
  long dims[4];
  void *data;
  size_t bytes;
} tensor;
static tensor tensors[MAX_TENSORS];
static int n_tensors;

static void die(const char *msg) {
  fprintf(stderr, "layers_dump: %s\n", msg);
  exit(1);
}

/* Copies the data, so callers may reuse their buffers. */
static void put(const char *name, const char *dtype, const void *data, int ndim, long d0, long d1,
                long d2, long d3) {
  if (n_tensors == MAX_TENSORS) die("too many tensors");
  tensor *t = &tensors[n_tensors++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dtype = dtype;
  t->ndim = ndim;
  long dims[4] = {d0, d1, d2, d3}, count = 1;
  for (int i = 0; i < ndim; i++) t->dims[i] = dims[i], count *= dims[i];
  t->bytes = (size_t)count * (strcmp(dtype, "F64") == 0 ? 8 : 4);
  t->data = malloc(t->bytes ? t->bytes : 1);
  if (!t->data) die("out of memory");
  memcpy(t->data, data, t->bytes);
}

static void putf(const char *name, const float *x, int ndim, long d0, long d1, long d2, long d3) {
  put(name, "F32", x, ndim, d0, d1, d2, d3);
}

static void putd(const char *name, double v) { put(name, "F64", &v, 1, 1, 0, 0, 0); }

static void write_file(const char *path) {
  size_t cap = 64 * 1024, len = 0, off = 0;
  char *hdr = malloc(cap);
  if (!hdr) die("out of memory");
  len += (size_t)snprintf(hdr + len, cap - len, "{");
  for (int i = 0; i < n_tensors; i++) {
    tensor *t = &tensors[i];
    len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                            i ? "," : "", t->name, t->dtype);
    for (int d = 0; d < t->ndim; d++)
      len += (size_t)snprintf(hdr + len, cap - len, "%s%ld", d ? "," : "", t->dims[d]);
    len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                            off + t->bytes);
    off += t->bytes;
    if (len + 512 > cap) die("header too long");
  }
  len += (size_t)snprintf(hdr + len, cap - len, "}");
  while (len % 8) hdr[len++] = ' '; /* align the data, as the format recommends */
  FILE *f = fopen(path, "wb");
  if (!f) die("cannot open the output file");
  uint64_t n = len;
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
  int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len;
  for (int i = 0; ok && i < n_tensors; i++)
    ok = fwrite(tensors[i].data, 1, tensors[i].bytes, f) == tensors[i].bytes;
  if (fclose(f) != 0 || !ok) die("write failed");
  free(hdr);
  for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
}

/* Deterministic values in [-1, 1). */
static void fill(float *x, long n, uint64_t seed) {
  for (long i = 0; i < n; i++)
    x[i] = (float)((sampler_mix64(seed * 1000003ULL + (uint64_t)i) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

/* ---- the network --------------------------------------------------------------- */

enum { B = 4, C = 2, H = 9, W = 8, OC = 3, K = 5 };

static void dump_net(void) {
  ms_conv2d g = {
      .C = C, .H = H, .W = W, .OC = OC, .KH = 3, .KW = 3, .SH = 2, .SW = 2, .PH = 1, .PW = 1};
  ms_conv2d pg = {.C = OC, .KH = 2, .KW = 2, .SH = 1, .SW = 1};
  if (conv2d_geometry(&g) != 0) die("bad conv geometry");
  pg.H = g.OH, pg.W = g.OW;
  if (conv2d_geometry(&pg) != 0) die("bad pool geometry");
  const long nx = (long)B * C * H * W, nwc = (long)OC * C * 9, nc = (long)B * OC * g.OH * g.OW;
  const int F = OC * pg.OH * pg.OW;
  float *x = malloc(sizeof(float) * (size_t)nx), *dx = malloc(sizeof(float) * (size_t)nx);
  float wc[OC * C * 9], bc[OC], dwc[OC * C * 9], dbc[OC];
  float *conv = malloc(sizeof(float) * (size_t)nc), *dconv = malloc(sizeof(float) * (size_t)nc);
  float *scratch = malloc(sizeof(float) * (size_t)conv2d_scratch_floats(&g, B));
  float *flat = malloc(sizeof(float) * (size_t)(B * F)),
        *dflat = malloc(sizeof(float) * (size_t)(B * F));
  int32_t *am = malloc(sizeof(int32_t) * (size_t)(B * F));
  float *wd = malloc(sizeof(float) * (size_t)(K * F)),
        *dwd = malloc(sizeof(float) * (size_t)(K * F));
  float bd[K], dbd[K], logits[B * K], dlogits[B * K], targets[B * K], reg[B * K];
  int32_t labels[B] = {1, 4, 0, 2};
  if (!x || !dx || !conv || !dconv || !scratch || !flat || !dflat || !am || !wd || !dwd)
    die("out of memory");
  fill(x, nx, 1), fill(wc, nwc, 2), fill(bc, OC, 3), fill(wd, (long)K * F, 4), fill(bd, K, 5);
  for (long i = 0; i < nwc; i++) wc[i] *= 0.5f;
  for (long i = 0; i < (long)K * F; i++) wd[i] *= 0.5f;
  fill(targets, B * K, 6), fill(reg, B * K, 7);
  for (int i = 0; i < B * K; i++) targets[i] = 0.5f * (targets[i] + 1.0f);

  conv2d_forward(conv, x, wc, bc, &g, B, scratch);
  putf("net.conv_out", conv, 4, B, OC, g.OH, g.OW);
  relu_forward(conv, nc);
  maxpool2d_forward(flat, am, conv, &pg, B);
  putf("net.pool_out", flat, 4, B, OC, pg.OH, pg.OW);
  dense_forward(logits, flat, wd, bd, B, F, K);
  putf("net.x", x, 4, B, C, H, W);
  putf("net.conv_w", wc, 4, OC, C, 3, 3);
  putf("net.conv_b", bc, 1, OC, 0, 0, 0);
  putf("net.dense_w", wd, 2, K, F, 0, 0);
  putf("net.dense_b", bd, 1, K, 0, 0, 0);
  putf("net.logits", logits, 2, B, K, 0, 0);
  put("net.labels", "I32", labels, 1, B, 0, 0, 0);
  putf("net.targets", targets, 2, B, K, 0, 0);
  putf("net.reg_targets", reg, 2, B, K, 0, 0);

  const char *losses[] = {"xent_smooth", "bce", "mse", "mae"};
  const float scale = 1.0f / B;
  for (int l = 0; l < 4; l++) {
    double loss = 0;
    switch (l) {
      case 0: loss = softmax_xent_smooth(dlogits, logits, labels, B, K, 0.1f, scale, NULL); break;
      case 1: loss = bce_logits_loss(dlogits, logits, targets, B, K, scale); break;
      case 2: loss = mse_loss(dlogits, logits, reg, B, K, scale); break;
      default: loss = mae_loss(dlogits, logits, reg, B, K, scale); break;
    }
    dense_backward(dflat, dwd, dbd, dlogits, flat, wd, B, F, K);
    maxpool2d_backward(dconv, dflat, am, &pg, B);
    relu_backward(dconv, conv, nc);
    conv2d_backward(dx, dwc, dbc, dconv, x, wc, &g, B, scratch);
    char name[64];
#define PUT(suffix, ...)                                       \
  snprintf(name, sizeof name, "net.%s.%s", losses[l], suffix); \
  putf(name, __VA_ARGS__)
    snprintf(name, sizeof name, "net.%s.loss", losses[l]);
    putd(name, loss);
    PUT("dlogits", dlogits, 2, B, K, 0, 0);
    PUT("dense_w", dwd, 2, K, F, 0, 0);
    PUT("dense_b", dbd, 1, K, 0, 0, 0);
    PUT("conv_w", dwc, 4, OC, C, 3, 3);
    PUT("conv_b", dbc, 1, OC, 0, 0, 0);
    PUT("x", dx, 4, B, C, H, W);
#undef PUT
  }
  long top[3];
  for (int k = 1; k <= 3; k++) top[k - 1] = topk_correct(logits, labels, B, K, k);
  int32_t top32[3] = {(int32_t)top[0], (int32_t)top[1], (int32_t)top[2]};
  put("topk.correct_k123", "I32", top32, 1, 3, 0, 0, 0);
  free(x), free(dx), free(conv), free(dconv), free(scratch), free(flat), free(dflat);
  free(am), free(wd), free(dwd);
}

/* ---- kernels one at a time ------------------------------------------------------ */

enum { UB = 4, UD = 7 };

static void dump_units(void) {
  float x[UB * UD], r[UB * UD], y[UB * UD], dx[UB * UD];
  fill(x, UB * UD, 11), fill(r, UB * UD, 12);
  for (int i = 0; i < UB * UD; i++) x[i] *= 3.0f;
  putf("unit.x", x, 2, UB, UD, 0, 0);
  putf("unit.r", r, 2, UB, UD, 0, 0);

  leaky_relu_forward(y, x, UB * UD, 0.1f);
  leaky_relu_backward(dx, r, x, UB * UD, 0.1f);
  putf("unit.leaky_relu.y", y, 2, UB, UD, 0, 0), putf("unit.leaky_relu.dx", dx, 2, UB, UD, 0, 0);
  gelu_forward(y, x, UB * UD);
  gelu_backward(dx, r, x, UB * UD);
  putf("unit.gelu.y", y, 2, UB, UD, 0, 0), putf("unit.gelu.dx", dx, 2, UB, UD, 0, 0);
  tanh_forward(y, x, UB * UD);
  tanh_backward(dx, r, y, UB * UD);
  putf("unit.tanh.y", y, 2, UB, UD, 0, 0), putf("unit.tanh.dx", dx, 2, UB, UD, 0, 0);
  sigmoid_forward(y, x, UB * UD);
  sigmoid_backward(dx, r, y, UB * UD);
  putf("unit.sigmoid.y", y, 2, UB, UD, 0, 0), putf("unit.sigmoid.dx", dx, 2, UB, UD, 0, 0);
  softmax_forward(y, x, UB, UD);
  softmax_backward(dx, r, y, UB, UD);
  putf("unit.softmax.y", y, 2, UB, UD, 0, 0), putf("unit.softmax.dx", dx, 2, UB, UD, 0, 0);

  float gamma[UD], beta[UD], mean[UB], rstd[UB], dg[UD], db[UD];
  fill(gamma, UD, 13), fill(beta, UD, 14);
  for (int j = 0; j < UD; j++) gamma[j] += 1.0f;
  layernorm_forward(y, mean, rstd, x, gamma, beta, UB, UD, 1e-5f);
  layernorm_backward(dx, dg, db, r, x, mean, rstd, gamma, UB, UD);
  putf("unit.layernorm.gamma", gamma, 1, UD, 0, 0, 0);
  putf("unit.layernorm.beta", beta, 1, UD, 0, 0, 0);
  putf("unit.layernorm.y", y, 2, UB, UD, 0, 0), putf("unit.layernorm.dx", dx, 2, UB, UD, 0, 0);
  putf("unit.layernorm.dgamma", dg, 1, UD, 0, 0, 0);
  putf("unit.layernorm.dbeta", db, 1, UD, 0, 0, 0);

  uint64_t rows[UB] = {40, 41, 42, 43};
  dropout_forward(y, x, UB, UD, 0.3f, 7, 3, rows);
  dropout_backward(dx, r, UB, UD, 0.3f, 7, 3, rows);
  putf("unit.dropout.y", y, 2, UB, UD, 0, 0), putf("unit.dropout.dx", dx, 2, UB, UD, 0, 0);

  ms_conv2d pg = {.C = 2, .H = 7, .W = 6, .KH = 3, .KW = 3, .SH = 2, .SW = 2};
  if (conv2d_geometry(&pg) != 0) die("bad pool geometry");
  float img[2 * 2 * 7 * 6], dimg[2 * 2 * 7 * 6], po[2 * 2 * 3 * 2], pr[2 * 2 * 3 * 2];
  fill(img, 2 * 2 * 7 * 6, 15), fill(pr, 2 * 2 * 3 * 2, 16);
  avgpool2d_forward(po, img, &pg, 2);
  avgpool2d_backward(dimg, pr, &pg, 2);
  putf("unit.avgpool.x", img, 4, 2, 2, 7, 6), putf("unit.avgpool.r", pr, 4, 2, 2, 3, 2);
  putf("unit.avgpool.y", po, 4, 2, 2, 3, 2), putf("unit.avgpool.dx", dimg, 4, 2, 2, 7, 6);
}

/* ---- optimizers ------------------------------------------------------------------ */

enum { NP = 6, STEPS = 20 };

static void dump_optim(const char *run, const ms_optim_params *op, const ms_schedule_params *sp,
                       const uint8_t *mask) {
  ms_optim *o = NULL;
  if (optim_create_params(&o, op, NP) != 0) die("optim_create_params failed");
  if (mask && optim_set_decay_mask(o, mask) != 0) die("optim_set_decay_mask failed");
  float p[NP], g[STEPS * NP], traj[STEPS * NP];
  double lrs[STEPS];
  fill(p, NP, 21);
  fill(g, STEPS * NP, 22);
  char name[64];
  snprintf(name, sizeof name, "opt.%s.p0", run);
  putf(name, p, 1, NP, 0, 0, 0);
  for (int t = 0; t < STEPS; t++) {
    double lr = schedule_lr_at(sp, t, STEPS);
    lrs[t] = lr;
    optim_step(o, p, g + t * NP, lr);
    memcpy(traj + t * NP, p, sizeof p);
  }
  snprintf(name, sizeof name, "opt.%s.grads", run);
  putf(name, g, 2, STEPS, NP, 0, 0);
  snprintf(name, sizeof name, "opt.%s.lr", run);
  put(name, "F64", lrs, 1, STEPS, 0, 0, 0);
  snprintf(name, sizeof name, "opt.%s.params", run);
  putf(name, traj, 2, STEPS, NP, 0, 0);
  optim_free(o);
}

static void dump_optims(void) {
  ms_optim_params sgd = {.kind = MS_OPTIM_SGD, .lr = 0.05, .weight_decay = 0.01, .momentum = 0.9};
  ms_schedule_params constant = {.kind = MS_SCHED_CONSTANT, .lr = 0.05};
  dump_optim("sgd", &sgd, &constant, NULL);
  sgd.nesterov = 1;
  dump_optim("sgd_nesterov", &sgd, &constant, NULL);

  ms_optim_params adam = {.kind = MS_OPTIM_ADAM,
                          .lr = 0.01,
                          .weight_decay = 0.01,
                          .beta1 = 0.9,
                          .beta2 = 0.999,
                          .eps = 1e-8};
  ms_schedule_params step = {.kind = MS_SCHED_STEP, .lr = 0.01, .step_size = 5, .gamma = 0.5};
  dump_optim("adam_step", &adam, &step, NULL);

  /* Decay on the first four elements only (weights), not the last two. */
  uint8_t mask[NP];
  optim_mask_range(mask, 0, 4, 1);
  optim_mask_range(mask, 4, 2, 0);
  ms_optim_params adamw = {.kind = MS_OPTIM_ADAMW,
                           .lr = 0.01,
                           .weight_decay = 0.05,
                           .beta1 = 0.9,
                           .beta2 = 0.99,
                           .eps = 1e-8};
  ms_schedule_params onecycle = {.kind = MS_SCHED_ONECYCLE,
                                 .lr = 0.01,
                                 .div_factor = 25,
                                 .final_div_factor = 1e4,
                                 .pct_start = 0.3};
  dump_optim("adamw_onecycle_mask", &adamw, &onecycle, mask);

  adamw.weight_decay = 0.1;
  ms_schedule_params cosine = {
      .kind = MS_SCHED_COSINE, .lr = 0.01, .warmup_steps = 3, .min_lr_ratio = 0.1};
  dump_optim("adamw_warmup_cosine", &adamw, &cosine, NULL);
}

/* ---- bf16 mixed precision ---------------------------------------------------------- */

static void dump_bf16(void) {
  enum { NB = 16, I = 40, Hd = 24, O = 6 };
  float x[NB * I], w1[Hd * I], b1[Hd], w2[O * Hd], b2[O], dout[NB * O];
  float h[NB * Hd], a[NB * Hd], out[NB * O], da[NB * Hd], dx[NB * I];
  float dw1[Hd * I], db1[Hd], dw2[O * Hd], db2[O];
  fill(x, NB * I, 30), fill(w1, Hd * I, 31), fill(b1, Hd, 32), fill(w2, O * Hd, 33);
  fill(b2, O, 34), fill(dout, NB * O, 35);
  dnn_dense *l1, *l2;
  if (dnn_dense_create(&l1, I, Hd, NB, DNN_BF16) || dnn_dense_create(&l2, Hd, O, NB, DNN_BF16))
    die("oneDNN: cannot create the bf16 layers");
  if (dnn_dense_forward(l1, h, x, w1, b1, NB)) die("oneDNN: bf16 forward failed");
  memcpy(a, h, sizeof a);
  relu_forward(a, NB * Hd);
  if (dnn_dense_forward(l2, out, a, w2, b2, NB) ||
      dnn_dense_backward(l2, da, dw2, db2, dout, a, w2, NB))
    die("oneDNN: bf16 forward or backward failed");
  relu_backward(da, a, NB * Hd);
  if (dnn_dense_backward(l1, dx, dw1, db1, da, x, w1, NB)) die("oneDNN: bf16 backward failed");
  putf("bf16.x", x, 2, NB, I, 0, 0), putf("bf16.w1", w1, 2, Hd, I, 0, 0);
  putf("bf16.b1", b1, 1, Hd, 0, 0, 0), putf("bf16.w2", w2, 2, O, Hd, 0, 0);
  putf("bf16.b2", b2, 1, O, 0, 0, 0), putf("bf16.dout", dout, 2, NB, O, 0, 0);
  putf("bf16.h", h, 2, NB, Hd, 0, 0), putf("bf16.out", out, 2, NB, O, 0, 0);
  putf("bf16.dx", dx, 2, NB, I, 0, 0), putf("bf16.dw1", dw1, 2, Hd, I, 0, 0);
  putf("bf16.db1", db1, 1, Hd, 0, 0, 0), putf("bf16.dw2", dw2, 2, O, Hd, 0, 0);
  putf("bf16.db2", db2, 1, O, 0, 0, 0);
  dnn_dense_free(l1), dnn_dense_free(l2);

  ms_conv2d g = {
      .C = C, .H = H, .W = W, .OC = OC, .KH = 3, .KW = 3, .SH = 2, .SW = 2, .PH = 1, .PW = 1};
  if (conv2d_geometry(&g) != 0) die("bad conv geometry");
  enum { NX = B * C * H * W, NW = OC * C * 9 };
  long ny = (long)B * OC * g.OH * g.OW;
  float cx[NX], cdx[NX], cw[NW], cdw[NW], cb[OC], cdb[OC];
  float *cy = malloc(sizeof(float) * (size_t)ny), *cdy = malloc(sizeof(float) * (size_t)ny);
  if (!cy || !cdy) die("out of memory");
  fill(cx, NX, 40), fill(cw, NW, 41), fill(cb, OC, 42), fill(cdy, ny, 43);
  dnn_conv *cv;
  if (dnn_conv_create(&cv, &g, B, DNN_BF16) || dnn_conv_forward(cv, cy, cx, cw, cb, B) ||
      dnn_conv_backward(cv, cdx, cdw, cdb, cdy, cx, cw, B))
    die("oneDNN: bf16 convolution failed");
  putf("bf16.conv.x", cx, 4, B, C, H, W), putf("bf16.conv.w", cw, 4, OC, C, 3, 3);
  putf("bf16.conv.b", cb, 1, OC, 0, 0, 0), putf("bf16.conv.dy", cdy, 4, B, OC, g.OH, g.OW);
  putf("bf16.conv.y", cy, 4, B, OC, g.OH, g.OW), putf("bf16.conv.dx", cdx, 4, B, C, H, W);
  putf("bf16.conv.dw", cdw, 4, OC, C, 3, 3), putf("bf16.conv.db", cdb, 1, OC, 0, 0, 0);
  dnn_conv_free(cv);
  free(cy), free(cdy);
}

int main(int argc, char **argv) {
  if (argc != 2) die("usage: layers_dump OUT.safetensors");
  dump_net();
  dump_units();
  dump_optims();
  dump_bf16();
  write_file(argv[1]);
  return 0;
}
