/* Internal to rng.c and its tests. */
#ifndef PNDM_RNG_H
#define PNDM_RNG_H

#include "pndm.h"

/* pndm_randn without the x86-64 FMA-instruction clone of the fill path (fmaf() from libm
 * throughout). Same bits as pndm_randn; lets the tests cover both code paths on any machine. */
void rng_randn_portable(pndm_rng *r, float *out, size_t n);

#endif
