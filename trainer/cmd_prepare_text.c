/* cmd_prepare_text — see cmd_prepare_text.h. */
#include "cmd_prepare_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "ms_error.h"

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "midscale: prepare text: ");
  fprintf(stderr, msg, arg);
  fprintf(stderr, "\n(see 'midscale help prepare')\n");
  return MS_EXIT_USAGE;
}

int cmd_prepare_text(int argc, char **argv, const char **written) {
  char err[MS_MSG_MAX] = "";
  convert_text_opts o = {.vocab = "bytes", .test_fraction = 0};
  const char **plain = malloc(sizeof *plain * (size_t)(argc > 0 ? argc : 1));
  size_t n = 0;
  if (!plain) return ms_error_set(MS_ENOMEM, "out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--vocab") == 0) {
      if (i + 1 >= argc) {
        free(plain);
        return usage("%s", "--vocab needs 'bytes' or a vocabulary file");
      }
      o.vocab = argv[++i];
    } else if (strcmp(a, "--test-fraction") == 0) {
      char *end = NULL;
      if (i + 1 < argc) o.test_fraction = strtod(argv[++i], &end);
      if (!end || *end || !(o.test_fraction >= 0 && o.test_fraction < 1)) {
        free(plain);
        return usage("%s", "--test-fraction needs a number in [0, 1)");
      }
    } else if (a[0] == '-' && a[1] != '\0') {
      free(plain);
      return usage("unexpected option '%s'", a);
    } else {
      plain[n++] = a;
    }
  }
  if (n < 2) {
    free(plain);
    return usage("%s", "needs at least one text FILE and OUT.h5");
  }
  const char *out = *written = plain[n - 1];
  convert_text_stats st = {0, 0, 0};
  int rc = ms_from_data(convert_text(plain, n - 1, out, &o, &st, err, sizeof err), err);
  free(plain);
  if (rc == 0)
    printf("%zu file%s: %llu training tokens (/train/tokens), %llu test tokens%s, vocab_size "
           "%llu\n",
           n - 1, n == 2 ? "" : "s", (unsigned long long)st.train_tokens,
           (unsigned long long)st.test_tokens, st.test_tokens ? " (/test/tokens)" : "",
           (unsigned long long)st.vocab_size);
  return rc;
}
