/* costmodel: hand-computed alpha-beta times of the schedules (ring,
 * halving/doubling, hierarchical vs flat bytes, 16-bit wire), the overlap
 * schedule (all hidden, none hidden), compute from a measured per-layer
 * table, and the --link parser. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "costmodel.h"

static int near(double x, double y) { return fabs(x - y) <= 1e-9 * fabs(y) + 1e-15; }
#define NEAR(x, y) assert_true(near((x), (y)))

static costmodel_in layout(int world, int nodes, hier_algorithm a) {
  costmodel_in in;
  memset(&in, 0, sizeof in);
  in.world = world, in.nodes = nodes, in.algorithm = a, in.shared_memory = 1;
  in.link.alpha = 1e-5, in.link.beta = 1e-9;
  in.rate = 1e9, in.batch = 1;
  return in;
}

static void test_costmodel_ring_and_halving_doubling(void **state) {
  (void)state;
  /* 4 nodes x 1 rank, 4000 floats. Ring: 2 (N - 1) = 6 steps of 1000
   * floats = 4000 bytes: 6 x (10 us + 4 us) = 84 us, 24000 bytes. */
  costmodel_in in = layout(4, 4, HIER_RING);
  double bytes = 0;
  NEAR(costmodel_sync_s(&in, 4000, &bytes), 84e-6);
  NEAR(bytes, 24000);
  /* Halving/doubling: 2 log2 4 = 4 steps, 2000 and 1000 floats each way:
   * 2 x (10 + 8) + 2 x (10 + 4) = 64 us, the same 24000 bytes. */
  in.algorithm = HIER_HALVING_DOUBLING;
  NEAR(costmodel_sync_s(&in, 4000, &bytes), 64e-6);
  NEAR(bytes, 24000);
  /* auto picks halving/doubling for this small slice on 4 nodes, and the
   * ring on 3 (not a power of two): 4 steps of 4000/3 floats. */
  in.algorithm = HIER_AUTO;
  NEAR(costmodel_sync_s(&in, 4000, NULL), 64e-6);
  in.world = in.nodes = 3;
  NEAR(costmodel_sync_s(&in, 4000, NULL), 4 * (1e-5 + 4000.0 / 3 * 4 * 1e-9));
  /* 2 nodes: one exchange each way of half the arena; bf16 halves bytes. */
  in = layout(2, 2, HIER_AUTO);
  NEAR(costmodel_sync_s(&in, 4000, &bytes), 2 * (1e-5 + 8e-6));
  NEAR(bytes, 16000);
  in.wire = WIRE_BF16;
  NEAR(costmodel_sync_s(&in, 4000, &bytes), 2 * (1e-5 + 4e-6));
  NEAR(bytes, 8000);
}

static void test_costmodel_hierarchical_halves_link_bytes(void **state) {
  (void)state;
  /* 2 nodes x 2 ranks, 4000 floats: each local rank's slice is 2000, one
   * exchange of 1000 floats each way, 2 ranks on the link: 2 x (10 us +
   * 2 x 4 us) = 36 us; 16000 bytes per node. */
  costmodel_in in = layout(4, 2, HIER_RING);
  double hb = 0, fb = 0;
  NEAR(costmodel_sync_s(&in, 4000, &hb), 36e-6);
  NEAR(hb, 16000);
  /* The node sum adds 2 x 4000 x 4 bytes at the memory bandwidth. */
  in.mem_bw = 32e9;
  NEAR(costmodel_sync_s(&in, 4000, NULL), 36e-6 + 1e-6);
  /* Flat (no window): 6 messages of 1000 floats per rank, 2 of each 3 to
   * the other node, 2 ranks per link: 32000 bytes, twice the hierarchy's. */
  in.shared_memory = 0, in.mem_bw = 0;
  NEAR(costmodel_sync_s(&in, 4000, &fb), 6 * 1e-5 + 32000 * 1e-9);
  NEAR(fb, 2 * hb);
}

/* Layers: 0 no parameters, F0 FLOPs; 1 parameters [0, 1000), F1; 2
 * parameters [1000, 2000), F2. Buckets of 1000 floats: one per layer. */
static costmodel_in three_layers(double f0, double f1, double f2) {
  costmodel_in in = layout(2, 2, HIER_RING);
  in.n_layers = 3;
  in.layer_flops[0] = f0, in.layer_flops[1] = f1, in.layer_flops[2] = f2;
  in.layer_lo[0] = (size_t)-1, in.layer_lo[1] = 0, in.layer_lo[2] = 1000;
  in.n_params = 2000;
  in.first_bucket_bytes = in.bucket_bytes = 4000;
  in.overlap = 1;
  return in;
}

static void test_costmodel_overlap_hides_all(void **state) {
  (void)state;
  /* Each bucket: 2 x (10 us + 2 us) = 24 us. Backward: layer 2 100 us,
   * layer 1 100 us, layer 0 1000 us: both buckets end long before. */
  costmodel_in in = three_layers(500e3, 50e3, 50e3);
  costmodel_out o;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  assert_int_equal(o.n_buckets, 2);
  NEAR(o.forward_s, 600e-6);
  NEAR(o.backward_s, 1200e-6);
  NEAR(o.bucket_ready_s[0], 100e-6);
  NEAR(o.bucket_ready_s[1], 200e-6);
  NEAR(o.sync_s, 48e-6);
  assert_true(o.exposed_s == 0.0);
  NEAR(o.step_s, 1800e-6);
  NEAR(o.efficiency, 1.0);
}

/* The hierarchical path cuts as its reducer does (hier.h): a first bucket
 * cap larger than the arena still leaves the last layer its own bucket
 * (at most a quarter of the arena), and a 16-bit wire reduces after backward. */
static void test_costmodel_hier_buckets_as_reducer(void **state) {
  (void)state;
  costmodel_in in = three_layers(500e3, 50e3, 50e3);
  in.world = in.nodes = 2; /* 2 nodes x 1 rank */
  in.first_bucket_bytes = 1 << 20, in.bucket_bytes = 25 << 20;
  costmodel_out o;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  assert_int_equal(o.path, COSTMODEL_HIER);
  assert_int_equal(o.n_buckets, 2);
  assert_true(o.overlap);
  NEAR(o.bucket_ready_s[0], 100e-6);
  in.wire = WIRE_BF16;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  assert_int_equal(o.n_buckets, 1);
  assert_false(o.overlap);
  NEAR(o.bucket_ready_s[0], o.backward_s);
}

static void test_costmodel_overlap_hides_none(void **state) {
  (void)state;
  /* No backward after the last bucket is ready and a tiny compute: the
   * first bucket (ready at 1 us) ends at 25 us, the second waits for the
   * link and ends at 49 us; backward ends at 2 us: 47 us exposed. */
  costmodel_in in = three_layers(0, 500, 500);
  costmodel_out o;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  NEAR(o.backward_s, 2e-6);
  NEAR(o.exposed_s, 47e-6);
  /* Overlap off: one reduction of 2000 floats after backward: 2 x (10 us
   * + 4 us) = 28 us, all exposed. */
  in.overlap = 0;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  assert_int_equal(o.n_buckets, 1);
  NEAR(o.exposed_s, 28e-6);
  NEAR(o.step_s, 3e-6 + 28e-6);
  NEAR(o.efficiency, 3e-6 / 31e-6);
  /* One rank: nothing to sync. */
  in.world = in.nodes = 1;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  assert_true(o.exposed_s == 0.0 && o.efficiency == 1.0);
  /* A layout that does not divide. */
  in.world = 3, in.nodes = 2;
  assert_int_equal(costmodel_predict(&in, &o), -1);
}

/* Compute from a measured per-layer table (costmodel_layers) instead of
 * FLOPs: the rate is not used, the buckets are ready when the table's
 * backward says, the optimizer comes after the sync. */
static void test_costmodel_layer_table(void **state) {
  (void)state;
  costmodel_in in = three_layers(500e3, 50e3, 50e3);
  in.rate = 0; /* the FLOP form would refuse: the table alone must do */
  in.layers.valid = 1, in.layers.batch = 1;
  in.layers.forward_s = 300e-6, in.layers.loss_s = 20e-6, in.layers.optim_s = 60e-6;
  in.layers.layer_backward_s[0] = 400e-6;
  in.layers.layer_backward_s[1] = 100e-6;
  in.layers.layer_backward_s[2] = 50e-6;
  costmodel_out o;
  /* Buckets of 24 us each, ready at 50 us (layer 2) and 150 us (layer 1);
   * backward ends at 550 us: all hidden. */
  assert_int_equal(costmodel_predict(&in, &o), 0);
  assert_int_equal(o.n_buckets, 2);
  NEAR(o.forward_s, 320e-6);
  NEAR(o.backward_s, 550e-6);
  NEAR(o.optim_s, 60e-6);
  NEAR(o.bucket_ready_s[0], 50e-6);
  NEAR(o.bucket_ready_s[1], 150e-6);
  assert_true(o.exposed_s == 0.0);
  NEAR(o.compute_s, 930e-6);
  NEAR(o.step_s, 930e-6);
  /* Overlap off: 2000 floats after backward, 28 us exposed, before the
   * optimizer. */
  in.overlap = 0;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  NEAR(o.exposed_s, 28e-6);
  NEAR(o.step_s, 958e-6);
  NEAR(o.efficiency, 930e-6 / 958e-6);
  /* train.accumulate 2: two forwards and losses, the first backward before
   * the last; the optimizer split over 2 ranks (comm.shared_params). */
  in.overlap = 1, in.accumulate = 2, in.optim_shards = 2;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  NEAR(o.forward_s, 2 * 320e-6 + 550e-6);
  NEAR(o.backward_s, 550e-6);
  NEAR(o.optim_s, 30e-6);
  NEAR(o.bucket_ready_s[0], 50e-6);
  NEAR(o.compute_s, 1190e-6 + 550e-6 + 30e-6);
  /* A short backward: the second bucket waits for the link (ends 49 us),
   * backward ends at 2 us: 47 us exposed, as with FLOPs. */
  in.accumulate = 1, in.optim_shards = 1;
  in.layers.layer_backward_s[0] = 0;
  in.layers.layer_backward_s[1] = 1e-6;
  in.layers.layer_backward_s[2] = 1e-6;
  assert_int_equal(costmodel_predict(&in, &o), 0);
  NEAR(o.backward_s, 2e-6);
  NEAR(o.exposed_s, 47e-6);
  /* Neither a table nor a rate: no prediction. */
  in.layers.valid = 0;
  assert_int_equal(costmodel_predict(&in, &o), -1);
}

static void test_costmodel_parse_link(void **state) {
  (void)state;
  costmodel_link l;
  assert_int_equal(costmodel_parse_link("1gbit", &l), 0);
  NEAR(l.beta, 8e-9);
  NEAR(l.alpha, 50e-6);
  assert_int_equal(costmodel_parse_link("100gbit", &l), 0);
  NEAR(l.beta, 8e-11);
  assert_int_equal(costmodel_parse_link("2.5Gbit,20us", &l), 0);
  NEAR(l.beta, 8 / 2.5e9);
  NEAR(l.alpha, 20e-6);
  assert_int_equal(costmodel_parse_link("800mbit,0.3ms", &l), 0);
  NEAR(l.alpha, 0.3e-3);
  assert_int_equal(costmodel_parse_link("5gbit", &l), -1); /* named rates only without a latency */
  assert_int_equal(costmodel_parse_link("fast", &l), -1);
  assert_int_equal(costmodel_parse_link("1gbit,", &l), -1);
  assert_int_equal(costmodel_parse_link("0gbit,1us", &l), -1);
  assert_int_equal(costmodel_parse_link(NULL, &l), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_costmodel_ring_and_halving_doubling),
      cmocka_unit_test(test_costmodel_hierarchical_halves_link_bytes),
      cmocka_unit_test(test_costmodel_overlap_hides_all),
      cmocka_unit_test(test_costmodel_overlap_hides_none),
      cmocka_unit_test(test_costmodel_hier_buckets_as_reducer),
      cmocka_unit_test(test_costmodel_layer_table),
      cmocka_unit_test(test_costmodel_parse_link),
  };
  return cmocka_run_group_tests_name("costmodel", tests, NULL, NULL);
}
