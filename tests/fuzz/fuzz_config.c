/* libFuzzer target for the config module: parse, override, validate, emit,
 * and parse the emitted text again.
 *
 * Input: YAML text, optionally followed by a NUL byte and one `--set`
 * assignment (`optim.lr=abc`), which is applied after a successful parse.
 *
 * Oracle (beyond the sanitizers): a config that parsed, and, when an
 * assignment was applied, that also validates, is emitted as text that must
 * parse back to a bytewise equal struct, with no resume-relevant difference.
 * A mismatch traps.
 *
 * Built only with -DMIDSCALE_FUZZ=ON (clang); see scripts/fuzz.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ms_error.h"

#define MAX_ASSIGNMENT 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  const char *nul = memchr(data, '\0', size);
  size_t len = nul ? (size_t)(nul - text) : size;
  char assignment[MAX_ASSIGNMENT + 1];
  int have_set = 0;
  if (nul) {
    size_t n = size - len - 1;
    if (n > MAX_ASSIGNMENT) n = MAX_ASSIGNMENT;
    memcpy(assignment, nul + 1, n);
    assignment[n] = '\0';
    have_set = 1;
  }

  ms_config *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  if (!a || !b) goto out;
  config_defaults(a);
  if (config_parse(a, text, len, "fuzz.yaml") != 0) goto out;
  int changed = have_set && config_override(a, assignment) == 0;
  int valid = config_validate(a, 1 + (int)(size % 4)) == 0;
  (void)config_check_steps(a, (int64_t)(size % 1000));
  char *emitted = config_emit(a);
  if (!emitted) goto out;
  if (!changed || valid) {
    char diff[256];
    config_defaults(b);
    if (config_parse(b, emitted, strlen(emitted), "emitted.yaml") != 0) __builtin_trap();
    if (memcmp(a, b, sizeof *a) != 0) __builtin_trap();
    if (config_diff(a, b, CONFIG_DIFF_ALL, diff, sizeof diff) != 0) __builtin_trap();
  }
  free(emitted);
out:
  free(a);
  free(b);
  ms_error_clear();
  return 0;
}
