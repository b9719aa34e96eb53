/* clones — MS_CLONES marks a hot loop for GCC's function multi-versioning:
 * the build has no -march (binaries stay portable), so the function is also
 * compiled for x86-64-v3 (AVX2) and x86-64-v4 (AVX-512), and the loader
 * picks the widest the CPU runs. The versions compute the same bits as long
 * as the loop does not reduce across vector lanes: C11 mode does not
 * contract a*b + c into an fma, and vectorising keeps each element's order
 * of operations. Elsewhere (other compilers, other architectures) it is
 * empty and the loop is compiled once. Internal to trainer/nn. */
#ifndef MS_CLONES_H
#define MS_CLONES_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MS_CLONES
#endif

#endif
