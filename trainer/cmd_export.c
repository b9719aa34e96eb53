/* cmd_export — see cmd_export.h. */
#include "cmd_export.h"

#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ms_error.h"
#include "onnx_export.h"

const char export_usage[] =
    "usage: midscale export CHECKPOINT OUT.safetensors [--with-optimizer]\n"
    "       midscale export CHECKPOINT OUT.onnx [--normalised-input] [--input C,H,W]\n"
    "       (--format safetensors|onnx overrides the extension)";

/* "C,H,W", "H,W" or "F": 1 to 3 positive integers. @return the count, or 0. */
static int parse_dims(const char *s, int64_t *dims) {
  int n = 0;
  while (s && *s && n < 3) {
    char *end;
    if (*s < '0' || *s > '9') return 0;
    long long v = strtoll(s, &end, 10);
    if (v < 1 || v > (1LL << 30)) return 0;
    dims[n++] = v;
    if (*end == '\0') return n;
    if (*end != ',') return 0;
    s = end + 1;
  }
  return 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int export_onnx(const char *in, const char *out_path, const onnx_export_opts *o,
                       FILE *out) {
  onnx_export_info info;
  int rc = onnx_export(in, out_path, o, &info);
  if (rc) return rc;
  char shape[96];
  int k = snprintf(shape, sizeof shape, "(N");
  for (int d = 0; d < info.in_ndim; d++)
    k += snprintf(shape + k, sizeof shape - (size_t)k, ", %lld", (long long)info.in_dims[d]);
  snprintf(shape + k, sizeof shape - (size_t)k, ")");
  fprintf(out,
          "wrote %s: ONNX opset %d, input %s %s, output (N, %ld), %d nodes, %d initializers, "
          "%lld bytes\n",
          out_path, ONNX_EXPORT_OPSET, shape, o->normalised_input ? "normalised" : "raw",
          info.n_out, info.nodes, info.initializers, info.bytes);
  return 0;
}

int export_main(int argc, char **argv, FILE *out) {
  const char *in = NULL, *out_path = NULL, *format = NULL;
  int with_optim = 0;
  onnx_export_opts o = {0, 0, {0, 0, 0}};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--with-optimizer") == 0) {
      with_optim = 1;
    } else if (strcmp(a, "--normalised-input") == 0 || strcmp(a, "--normalized-input") == 0) {
      o.normalised_input = 1;
    } else if (strcmp(a, "--format") == 0 || strncmp(a, "--format=", 9) == 0) {
      format = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!format || (strcmp(format, "onnx") != 0 && strcmp(format, "safetensors") != 0))
        return ms_error_set(MS_EUSAGE, "export: --format takes onnx or safetensors");
    } else if (strcmp(a, "--input") == 0 || strncmp(a, "--input=", 8) == 0) {
      const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      if (!(o.input_ndim = parse_dims(v, o.input)))
        return ms_error_set(MS_EUSAGE,
                            "export: --input takes the per-sample shape C,H,W, H,W or F "
                            "(positive integers)");
    } else if (a[0] == '-' && a[1]) {
      return ms_error_set(MS_EUSAGE, "export: unknown option '%s'\n%s", a, export_usage);
    } else if (!in) {
      in = a;
    } else if (!out_path) {
      out_path = a;
    } else {
      return ms_error_set(MS_EUSAGE, "export: unexpected argument '%s'\n%s", a, export_usage);
    }
  }
  if (!in || !out_path) return ms_error_set(MS_EUSAGE, "%s", export_usage);
  int onnx = format ? strcmp(format, "onnx") == 0 : ends_with(out_path, ".onnx");
  if (onnx && with_optim)
    return ms_error_set(MS_EUSAGE, "export: --with-optimizer is for safetensors output");
  if (!onnx && (o.normalised_input || o.input_ndim))
    return ms_error_set(MS_EUSAGE, "export: --normalised-input and --input are for ONNX output "
                                   "(OUT.onnx or --format onnx)");
  if (onnx) return export_onnx(in, out_path, &o, out);
  int rc = ckpt_export(in, out_path, with_optim ? NULL : "optim/");
  if (rc) return rc;
  fprintf(out, "wrote %s\n", out_path);
  return 0;
}
