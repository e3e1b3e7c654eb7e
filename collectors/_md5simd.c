/* The MD5 compression function, on one stream (the portable reference) or on 16
   (AVX-512) or 8 (AVX2) streams at once, one a 32-bit SIMD lane (collectors/_md5lanes.c
   says why). Each engine is compiled for its own target (__attribute__((target))), so one
   build runs on every x86-64 and uses what the CPU has (md5_engine_supported). */
#include "_md5simd.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86 1
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
    0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
    0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
    0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
    0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
    0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
    0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
    0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
    0xeb86d391};
static const int R[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                          5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                          4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                          6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};
/* which message word step i reads */
static const int G[64] = {0, 1, 2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                          1, 6, 11, 0,  5,  10, 15, 4,  9,  14, 3,  8,  13, 2,  7,  12,
                          5, 8, 11, 14, 1,  4,  7,  10, 13, 0,  3,  6,  9,  12, 15, 2,
                          0, 7, 14, 5,  12, 3,  10, 1,  8,  15, 6,  13, 4,  11, 2,  9};
static inline uint32_t rol32(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

static inline uint32_t load_le32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4); /* x86 and the other little-endian hosts this runs on */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

/* One block of one stream: the reference every engine must agree with. */
void md5_scalar(md5_state s, int lane, const uint8_t *block) {
    uint32_t m[16], a = s[0][lane], b = s[1][lane], c = s[2][lane], d = s[3][lane];
    for (int i = 0; i < 16; i++) m[i] = load_le32(block + 4 * i);
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        if (i < 16)
            f = (b & c) | (~b & d);
        else if (i < 32)
            f = (d & b) | (~d & c);
        else if (i < 48)
            f = b ^ c ^ d;
        else
            f = c ^ (b | ~d);
        f = f + a + K[i] + m[G[i]];
        a = d;
        d = c;
        c = b;
        b = b + rol32(f, R[i]);
    }
    s[0][lane] += a;
    s[1][lane] += b;
    s[2][lane] += c;
    s[3][lane] += d;
}

#ifdef HAVE_X86
/* ---- AVX-512: 16 lanes ---------------------------------------------------------- */

/* 16 rows of 16 words (one 64-byte block a lane) into 16 registers of one word of
   every lane: w[j] lane i = word j of block i. */
__attribute__((target("avx512f"))) static inline void transpose16(const uint8_t *const p[16],
                                                                  __m512i w[16]) {
    __m512i r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512((const void *)p[i]);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* r[4q + k] holds, in 128-bit chunk c, word 4c + k' of rows 4q..4q+3 (k' = 0,1,2,3
       for k = 0,1,2,3). Gather the chunks of the same c across q. */
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88);      /* c 0,2 of q 0,1 */
        t[4 + k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);  /* c 1,3 of q 0,1 */
        t[8 + k] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
        t[12 + k] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
    }
    for (int k = 0; k < 4; k++) {
        w[k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0x88);           /* c 0 */
        w[8 + k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0xdd);       /* c 2 */
        w[4 + k] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0x88);  /* c 1 */
        w[12 + k] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0xdd); /* c 3 */
    }
}

#define STEP512(fn, a, b, c, d, i, r)                                                     \
    do {                                                                                  \
        __m512i f_ = _mm512_ternarylogic_epi32(b, c, d, fn);                              \
        f_ = _mm512_add_epi32(f_, _mm512_add_epi32(a, _mm512_add_epi32(                   \
                                      _mm512_set1_epi32((int)K[i]), w[G[i]])));           \
        a = _mm512_add_epi32(b, _mm512_rol_epi32(f_, r));                                 \
    } while (0)
/* G(b,c,d) = (b & d) | (c & ~d) = d ? b : c */
#define STEPG(a, b, c, d, i, r)                                                           \
    do {                                                                                  \
        __m512i f_ = _mm512_ternarylogic_epi32(d, b, c, 0xca);                            \
        f_ = _mm512_add_epi32(f_, _mm512_add_epi32(a, _mm512_add_epi32(                   \
                                      _mm512_set1_epi32((int)K[i]), w[G[i]])));           \
        a = _mm512_add_epi32(b, _mm512_rol_epi32(f_, r));                                 \
    } while (0)

/* F = b ? c : d (0xca), G = d ? b : c (select on d: ternary of d,b,c), H = b^c^d (0x96),
   I = c ^ (b | ~d) (0x39). */
__attribute__((target("avx512f"))) void md5_avx512(md5_state s, const uint8_t *const p[16],
                                                   ptrdiff_t rounds, unsigned live) {
    __m512i a, b, c, d;
    a = _mm512_loadu_si512(s[0]);
    b = _mm512_loadu_si512(s[1]);
    c = _mm512_loadu_si512(s[2]);
    d = _mm512_loadu_si512(s[3]);
    const uint8_t *q[16];
    for (int i = 0; i < 16; i++) q[i] = p[i];
    for (ptrdiff_t n = 0; n < rounds; n++) {
        __m512i w[16];
        transpose16(q, w);
        __m512i a0 = a, b0 = b, c0 = c, d0 = d;
        STEP512(0xca, a, b, c, d, 0, 7);
        STEP512(0xca, d, a, b, c, 1, 12);
        STEP512(0xca, c, d, a, b, 2, 17);
        STEP512(0xca, b, c, d, a, 3, 22);
        STEP512(0xca, a, b, c, d, 4, 7);
        STEP512(0xca, d, a, b, c, 5, 12);
        STEP512(0xca, c, d, a, b, 6, 17);
        STEP512(0xca, b, c, d, a, 7, 22);
        STEP512(0xca, a, b, c, d, 8, 7);
        STEP512(0xca, d, a, b, c, 9, 12);
        STEP512(0xca, c, d, a, b, 10, 17);
        STEP512(0xca, b, c, d, a, 11, 22);
        STEP512(0xca, a, b, c, d, 12, 7);
        STEP512(0xca, d, a, b, c, 13, 12);
        STEP512(0xca, c, d, a, b, 14, 17);
        STEP512(0xca, b, c, d, a, 15, 22);
        STEPG(a, b, c, d, 16, 5);
        STEPG(d, a, b, c, 17, 9);
        STEPG(c, d, a, b, 18, 14);
        STEPG(b, c, d, a, 19, 20);
        STEPG(a, b, c, d, 20, 5);
        STEPG(d, a, b, c, 21, 9);
        STEPG(c, d, a, b, 22, 14);
        STEPG(b, c, d, a, 23, 20);
        STEPG(a, b, c, d, 24, 5);
        STEPG(d, a, b, c, 25, 9);
        STEPG(c, d, a, b, 26, 14);
        STEPG(b, c, d, a, 27, 20);
        STEPG(a, b, c, d, 28, 5);
        STEPG(d, a, b, c, 29, 9);
        STEPG(c, d, a, b, 30, 14);
        STEPG(b, c, d, a, 31, 20);
        STEP512(0x96, a, b, c, d, 32, 4);
        STEP512(0x96, d, a, b, c, 33, 11);
        STEP512(0x96, c, d, a, b, 34, 16);
        STEP512(0x96, b, c, d, a, 35, 23);
        STEP512(0x96, a, b, c, d, 36, 4);
        STEP512(0x96, d, a, b, c, 37, 11);
        STEP512(0x96, c, d, a, b, 38, 16);
        STEP512(0x96, b, c, d, a, 39, 23);
        STEP512(0x96, a, b, c, d, 40, 4);
        STEP512(0x96, d, a, b, c, 41, 11);
        STEP512(0x96, c, d, a, b, 42, 16);
        STEP512(0x96, b, c, d, a, 43, 23);
        STEP512(0x96, a, b, c, d, 44, 4);
        STEP512(0x96, d, a, b, c, 45, 11);
        STEP512(0x96, c, d, a, b, 46, 16);
        STEP512(0x96, b, c, d, a, 47, 23);
        STEP512(0x39, a, b, c, d, 48, 6);
        STEP512(0x39, d, a, b, c, 49, 10);
        STEP512(0x39, c, d, a, b, 50, 15);
        STEP512(0x39, b, c, d, a, 51, 21);
        STEP512(0x39, a, b, c, d, 52, 6);
        STEP512(0x39, d, a, b, c, 53, 10);
        STEP512(0x39, c, d, a, b, 54, 15);
        STEP512(0x39, b, c, d, a, 55, 21);
        STEP512(0x39, a, b, c, d, 56, 6);
        STEP512(0x39, d, a, b, c, 57, 10);
        STEP512(0x39, c, d, a, b, 58, 15);
        STEP512(0x39, b, c, d, a, 59, 21);
        STEP512(0x39, a, b, c, d, 60, 6);
        STEP512(0x39, d, a, b, c, 61, 10);
        STEP512(0x39, c, d, a, b, 62, 15);
        STEP512(0x39, b, c, d, a, 63, 21);
        /* idle lanes hashed a zero block; their state stays as it was */
        a = _mm512_mask_add_epi32(a0, (__mmask16)live, a, a0);
        b = _mm512_mask_add_epi32(b0, (__mmask16)live, b, b0);
        c = _mm512_mask_add_epi32(c0, (__mmask16)live, c, c0);
        d = _mm512_mask_add_epi32(d0, (__mmask16)live, d, d0);
        for (int i = 0; i < 16; i++)
            if (live & (1u << i)) q[i] += 64;
    }
    _mm512_storeu_si512(s[0], a);
    _mm512_storeu_si512(s[1], b);
    _mm512_storeu_si512(s[2], c);
    _mm512_storeu_si512(s[3], d);
}

/* ---- AVX2: 8 lanes -------------------------------------------------------------- */

__attribute__((target("avx2"))) static inline void transpose8(__m256i r[8]) {
    __m256i t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int k = 0; k < 4; k++) {
        t[k] = _mm256_permute2x128_si256(r[k], r[4 + k], 0x20);
        t[4 + k] = _mm256_permute2x128_si256(r[k], r[4 + k], 0x31);
    }
    for (int i = 0; i < 8; i++) r[i] = t[i];
}

#define ROL256(x, n) _mm256_or_si256(_mm256_slli_epi32(x, n), _mm256_srli_epi32(x, 32 - (n)))
#define STEP256(expr, a, b, c, d, i)                                                      \
    do {                                                                                  \
        __m256i f_ = (expr);                                                              \
        f_ = _mm256_add_epi32(f_, _mm256_add_epi32(a, _mm256_add_epi32(                   \
                                      _mm256_set1_epi32((int)K[i]), w[G[i]])));           \
        a = _mm256_add_epi32(b, ROL256(f_, R[i]));                                        \
    } while (0)
#define F256(b, c, d) _mm256_or_si256(_mm256_and_si256(b, c), _mm256_andnot_si256(b, d))
#define G256(b, c, d) _mm256_or_si256(_mm256_and_si256(d, b), _mm256_andnot_si256(d, c))
#define H256(b, c, d) _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define I256(b, c, d) _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones)))
/* the 16 steps of one round, starting at step `from` */
#define ROUND256(FN, from)                                                                \
    for (int i = (from); i < (from) + 16; i += 4) {                                       \
        STEP256(FN(b, c, d), a, b, c, d, i);                                              \
        STEP256(FN(a, b, c), d, a, b, c, i + 1);                                          \
        STEP256(FN(d, a, b), c, d, a, b, i + 2);                                          \
        STEP256(FN(c, d, a), b, c, d, a, i + 3);                                          \
    }

__attribute__((target("avx2"))) void md5_avx2(md5_state s, const uint8_t *const p[8],
                                              ptrdiff_t rounds, unsigned live) {
    int32_t m[8];
    for (int i = 0; i < 8; i++) m[i] = (live & (1u << i)) ? -1 : 0;
    const __m256i mask = _mm256_loadu_si256((const __m256i *)m);
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i a = _mm256_loadu_si256((const __m256i *)s[0]);
    __m256i b = _mm256_loadu_si256((const __m256i *)s[1]);
    __m256i c = _mm256_loadu_si256((const __m256i *)s[2]);
    __m256i d = _mm256_loadu_si256((const __m256i *)s[3]);
    const uint8_t *q[8];
    for (int i = 0; i < 8; i++) q[i] = p[i];
    for (ptrdiff_t n = 0; n < rounds; n++) {
        __m256i w[16];
        for (int i = 0; i < 8; i++) {
            w[i] = _mm256_loadu_si256((const __m256i *)q[i]);
            w[8 + i] = _mm256_loadu_si256((const __m256i *)(q[i] + 32));
        }
        transpose8(w);
        transpose8(w + 8);
        __m256i a0 = a, b0 = b, c0 = c, d0 = d;
        ROUND256(F256, 0);
        ROUND256(G256, 16);
        ROUND256(H256, 32);
        ROUND256(I256, 48);
        a = _mm256_add_epi32(a0, _mm256_and_si256(a, mask));
        b = _mm256_add_epi32(b0, _mm256_and_si256(b, mask));
        c = _mm256_add_epi32(c0, _mm256_and_si256(c, mask));
        d = _mm256_add_epi32(d0, _mm256_and_si256(d, mask));
        for (int i = 0; i < 8; i++)
            if (live & (1u << i)) q[i] += 64;
    }
    _mm256_storeu_si256((__m256i *)s[0], a);
    _mm256_storeu_si256((__m256i *)s[1], b);
    _mm256_storeu_si256((__m256i *)s[2], c);
    _mm256_storeu_si256((__m256i *)s[3], d);
}
#endif /* HAVE_X86 */

int md5_engine_supported(int engine) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (engine == ENGINE_AVX512) return __builtin_cpu_supports("avx512f");
    if (engine == ENGINE_AVX2) return __builtin_cpu_supports("avx2");
#endif
    return engine == ENGINE_SCALAR;
}
