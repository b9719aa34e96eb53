#include "hier.h"

#include <stdint.h>
#include <string.h>

static const char *const names[] = {"auto", "ring", "halving_doubling", "mpi"};

const char *hier_algorithm_name(hier_algorithm a) {
  return a >= HIER_AUTO && a <= HIER_MPI ? names[a] : "?";
}

size_t hier_slice_start(size_t n, int j, int L) {
  if (j >= L) return n;
  return (size_t)((uint64_t)n * (uint64_t)j / (uint64_t)L) & ~(size_t)15;
}

size_t hier_chunk_start(size_t m, int c, int N) {
  if (c >= N) return m;
  return (size_t)((uint64_t)m * (uint64_t)c / (uint64_t)N);
}

size_t hier_first_bucket(size_t n, size_t first) { return first > n / 4 ? n / 4 : first; }

int hier_can_overlap(int wire_16bit, int n_nodes) { return !wire_16bit && n_nodes <= 2; }

static int mod(int a, int N) { return ((a % N) + N) % N; }

int hier_ring_send(int k, int s, int N) { return mod(k - s - 1, N); }

int hier_ring_gather(int k, int s, int N) { return mod(k - s, N); }

static int power_of_two(int N) { return N > 0 && (N & (N - 1)) == 0; }

hier_algorithm hier_resolve(hier_algorithm asked, int N, size_t slice_bytes) {
  switch (asked) {
    case HIER_MPI: return N == 2 ? HIER_MPI : HIER_RING;
    case HIER_HALVING_DOUBLING: return power_of_two(N) ? HIER_HALVING_DOUBLING : HIER_RING;
    case HIER_RING: return HIER_RING;
    default:
      return power_of_two(N) && N >= 4 && slice_bytes / 2 <= HIER_AUTO_HD_BYTES
                 ? HIER_HALVING_DOUBLING
                 : HIER_RING;
  }
}

static size_t chunk_len(size_t m, int c, int N) {
  return hier_chunk_start(m, c + 1, N) - hier_chunk_start(m, c, N);
}

size_t hier_sent_floats(hier_algorithm a, size_t m, int k, int N) {
  if (N < 2) return 0;
  if (a != HIER_HALVING_DOUBLING) /* all chunks but one each way */
    return (m - chunk_len(m, k, N)) + (m - chunk_len(m, mod(k + 1, N), N));
  /* Halving: at distance d the half not kept; doubling sends back what it
   * holds, the same ranges in reverse. */
  size_t sent = 0;
  int lo = 0, hi = N;
  for (int d = N / 2; d >= 1; d /= 2) {
    int mid = (lo + hi) / 2;
    int keep_lo = (k & d) ? mid : lo, keep_hi = (k & d) ? hi : mid;
    int give_lo = (k & d) ? lo : mid, give_hi = (k & d) ? mid : hi;
    sent += hier_chunk_start(m, give_hi, N) - hier_chunk_start(m, give_lo, N);
    sent += hier_chunk_start(m, keep_hi, N) - hier_chunk_start(m, keep_lo, N);
    lo = keep_lo, hi = keep_hi;
  }
  return sent;
}
