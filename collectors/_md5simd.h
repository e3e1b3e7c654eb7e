/* MD5 compression on several streams at once: collectors/_md5simd.c. */
#ifndef PRESERVE_MD5SIMD_H
#define PRESERVE_MD5SIMD_H

#include <stddef.h>
#include <stdint.h>

#define MAXLANES 16

enum md5_engine { ENGINE_SCALAR = 0, ENGINE_AVX2 = 1, ENGINE_AVX512 = 2 };

/* The states of all lanes, word-major (s[j][i]: word j of lane i), as the SIMD engines
   load and store them. */
typedef uint32_t md5_state[4][MAXLANES];

int md5_engine_supported(int engine);
/* one 64-byte block of lane `lane` */
void md5_scalar(md5_state s, int lane, const uint8_t *block);
/* `rounds` blocks of each lane, from p[i] on; a lane not in `live` is left as it was
   (its p[i] must still point at a readable block, which is not advanced) */
void md5_avx512(md5_state s, const uint8_t *const p[16], ptrdiff_t rounds, unsigned live);
void md5_avx2(md5_state s, const uint8_t *const p[8], ptrdiff_t rounds, unsigned live);

#endif
