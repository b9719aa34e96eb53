/* optim_clip_grad_norm: torch.nn.utils.clip_grad_norm_'s arithmetic. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "optim.h"

static void test_clip_scales_to_the_max_norm(void **state) {
  (void)state;
  float g[4] = {3.0f, 4.0f, 0.0f, -12.0f}; /* norm 13 */
  double norm = optim_clip_grad_norm(g, 4, 1.3);
  assert_true(norm == 13.0);
  float f = (float)(1.3 / (13.0 + 1e-6));
  assert_true(g[0] == 3.0f * f && g[1] == 4.0f * f && g[2] == 0.0f && g[3] == -12.0f * f);
  double after = sqrt((double)g[0] * g[0] + (double)g[1] * g[1] + (double)g[3] * g[3]);
  assert_true(fabs(after - 1.3) < 1e-6);
}

static void test_clip_leaves_small_gradients(void **state) {
  (void)state;
  float g[3] = {0.1f, -0.2f, 0.2f}; /* norm 0.3 */
  double norm = optim_clip_grad_norm(g, 3, 0.3000001);
  assert_true(fabs(norm - 0.3) < 1e-7);
  assert_true(g[0] == 0.1f && g[1] == -0.2f && g[2] == 0.2f);
  /* max_norm 0: only the norm is measured. */
  float h[2] = {30.0f, 40.0f};
  assert_true(optim_clip_grad_norm(h, 2, 0.0) == 50.0);
  assert_true(h[0] == 30.0f && h[1] == 40.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clip_scales_to_the_max_norm),
      cmocka_unit_test(test_clip_leaves_small_gradients),
  };
  return cmocka_run_group_tests_name("clip", tests, NULL, NULL);
}
