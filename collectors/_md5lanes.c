/* MD5 of many independent streams at once, one stream a SIMD lane.

   MD5 of one stream is serial (each step needs the last), so one core hashes one file
   at ~0.8 GB/s; but the same 64 steps on 16 streams fit the 16 32-bit lanes of an
   AVX-512 register (8 of AVX2), so a core hashes 16 files in about the time of one.
   The package check is ~100,000 files whose MD5 dpkg recorded: independent streams.

   The object holds LANES streams. feed(lane, buffer, last) hands a lane its next
   bytes (a multiple of 64 unless last; with last the lane pads itself, so lanes of any
   lengths finish right); run() hashes every fed lane in lockstep, the GIL released,
   until one or more lanes have used up their buffer, and says which (with the digest
   of those that were last). One build runs everywhere: each engine is compiled for its
   own target (__attribute__((target))) and chosen at run time (__builtin_cpu_supports).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86 1
#include <immintrin.h>
#endif

#define MAXLANES 16

enum engine { ENGINE_SCALAR = 0, ENGINE_AVX2 = 1, ENGINE_AVX512 = 2 };
static const char *const ENGINE_NAMES[] = {"scalar", "avx2", "avx512"};
static const int ENGINE_LANES[] = {1, 8, 16};

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
static const uint8_t ZERO_BLOCK[64];

typedef struct {
    uint32_t h[4];
    uint64_t length;        /* bytes fed so far, for the padding */
    const uint8_t *next;    /* next block of the current segment */
    Py_ssize_t blocks;      /* blocks left in the current segment */
    uint8_t pad[128];       /* the tail and padding of a last buffer */
    int pad_blocks;         /* padding blocks still to run after the buffer */
    int fed;                /* has a buffer (or padding) still to hash */
    int last;               /* this buffer is the stream's end */
    Py_buffer view;         /* the fed buffer, held until its lane has used it up */
    int holding;
    int fd;                 /* a file the lane reads itself (feed_fd), or -1 */
    Py_ssize_t size;        /* its stat size, for the end-of-file rule */
    uint64_t total;         /* bytes read from it */
    uint8_t *buf;           /* the lane's own read buffer */
    Py_ssize_t carry_off;   /* bytes past the last whole block of a short read */
    Py_ssize_t carry;
    int err;                /* errno of a failed read */
} Lane;

typedef struct {
    PyObject_HEAD
    int engine;
    int nlanes;
    int busy;
    Py_ssize_t bufsize;
    Lane lane[MAXLANES];
} LanesObject;

static void lane_reset(Lane *l) {
    l->h[0] = 0x67452301;
    l->h[1] = 0xefcdab89;
    l->h[2] = 0x98badcfe;
    l->h[3] = 0x10325476;
    l->length = 0;
    l->blocks = 0;
    l->pad_blocks = 0;
    l->fed = 0;
    l->last = 0;
    l->fd = -1;
    l->carry = 0;
    l->err = 0;
}

/* The lane's last bytes: its whole blocks, then the tail and MD5's padding. */
static void lane_set_last(Lane *l, const uint8_t *data, Py_ssize_t len) {
    l->next = data;
    l->blocks = len / 64;
    l->length += (uint64_t)len;
    l->last = 1;
    Py_ssize_t tail = len % 64;
    memset(l->pad, 0, sizeof l->pad);
    memcpy(l->pad, data + 64 * l->blocks, (size_t)tail);
    l->pad[tail] = 0x80;
    l->pad_blocks = tail < 56 ? 1 : 2;
    uint64_t bits = l->length * 8;
    for (int k = 0; k < 8; k++) l->pad[64 * l->pad_blocks - 8 + k] = (uint8_t)(bits >> (8 * k));
}

/* The next piece of a lane's file, with filedigest._read_into's end-of-file rule: the
   end is a read of nothing, or a short read at or past the stat size (a stat size of 0
   is read on to the end). Bytes past the last whole block wait for the next read. */
static void lane_refill(Lane *l, Py_ssize_t bufsize) {
    if (l->carry) memmove(l->buf, l->buf + l->carry_off, (size_t)l->carry);
    Py_ssize_t room = bufsize - l->carry;
    ssize_t n;
    do
        n = read(l->fd, l->buf + l->carry, (size_t)room);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        l->err = errno ? errno : EIO;
        return;
    }
    l->total += (uint64_t)n;
    Py_ssize_t have = l->carry + n;
    if (n == 0 || (n < room && l->size > 0 && l->total >= (uint64_t)l->size)) {
        l->carry = 0;
        lane_set_last(l, l->buf, have);
        return;
    }
    Py_ssize_t whole = have - have % 64;
    l->next = l->buf;
    l->blocks = whole / 64;
    l->length += (uint64_t)whole;
    l->carry_off = whole;
    l->carry = have - whole;
}

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
static void compress_scalar(uint32_t h[4], const uint8_t *block) {
    uint32_t m[16], a = h[0], b = h[1], c = h[2], d = h[3];
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
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
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
__attribute__((target("avx512f"))) static void run_avx512(Lane *lanes, const uint8_t *const p[16],
                                                          Py_ssize_t rounds, __mmask16 live) {
    __m512i a, b, c, d;
    uint32_t s[4][16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 4; j++) s[j][i] = lanes[i].h[j];
    a = _mm512_loadu_si512(s[0]);
    b = _mm512_loadu_si512(s[1]);
    c = _mm512_loadu_si512(s[2]);
    d = _mm512_loadu_si512(s[3]);
    const uint8_t *q[16];
    for (int i = 0; i < 16; i++) q[i] = p[i];
    for (Py_ssize_t n = 0; n < rounds; n++) {
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
        a = _mm512_mask_add_epi32(a0, live, a, a0);
        b = _mm512_mask_add_epi32(b0, live, b, b0);
        c = _mm512_mask_add_epi32(c0, live, c, c0);
        d = _mm512_mask_add_epi32(d0, live, d, d0);
        for (int i = 0; i < 16; i++)
            if (live & (1u << i)) q[i] += 64;
    }
    _mm512_storeu_si512(s[0], a);
    _mm512_storeu_si512(s[1], b);
    _mm512_storeu_si512(s[2], c);
    _mm512_storeu_si512(s[3], d);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 4; j++) lanes[i].h[j] = s[j][i];
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

__attribute__((target("avx2"))) static void run_avx2(Lane *lanes, const uint8_t *const p[8],
                                                     Py_ssize_t rounds, unsigned live) {
    uint32_t s[4][8];
    int32_t m[8];
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 4; j++) s[j][i] = lanes[i].h[j];
        m[i] = (live & (1u << i)) ? -1 : 0;
    }
    const __m256i mask = _mm256_loadu_si256((const __m256i *)m);
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i a = _mm256_loadu_si256((const __m256i *)s[0]);
    __m256i b = _mm256_loadu_si256((const __m256i *)s[1]);
    __m256i c = _mm256_loadu_si256((const __m256i *)s[2]);
    __m256i d = _mm256_loadu_si256((const __m256i *)s[3]);
    const uint8_t *q[8];
    for (int i = 0; i < 8; i++) q[i] = p[i];
    for (Py_ssize_t n = 0; n < rounds; n++) {
        __m256i w[16];
        for (int i = 0; i < 8; i++) {
            w[i] = _mm256_loadu_si256((const __m256i *)q[i]);
            w[8 + i] = _mm256_loadu_si256((const __m256i *)(q[i] + 32));
        }
        transpose8(w);
        transpose8(w + 8);
        __m256i a0 = a, b0 = b, c0 = c, d0 = d;
        for (int i = 0; i < 16; i += 4) {
            STEP256(F256(b, c, d), a, b, c, d, i);
            STEP256(F256(a, b, c), d, a, b, c, i + 1);
            STEP256(F256(d, a, b), c, d, a, b, i + 2);
            STEP256(F256(c, d, a), b, c, d, a, i + 3);
        }
        for (int i = 16; i < 32; i += 4) {
            STEP256(G256(b, c, d), a, b, c, d, i);
            STEP256(G256(a, b, c), d, a, b, c, i + 1);
            STEP256(G256(d, a, b), c, d, a, b, i + 2);
            STEP256(G256(c, d, a), b, c, d, a, i + 3);
        }
        for (int i = 32; i < 48; i += 4) {
            STEP256(H256(b, c, d), a, b, c, d, i);
            STEP256(H256(a, b, c), d, a, b, c, i + 1);
            STEP256(H256(d, a, b), c, d, a, b, i + 2);
            STEP256(H256(c, d, a), b, c, d, a, i + 3);
        }
        for (int i = 48; i < 64; i += 4) {
            STEP256(I256(b, c, d), a, b, c, d, i);
            STEP256(I256(a, b, c), d, a, b, c, i + 1);
            STEP256(I256(d, a, b), c, d, a, b, i + 2);
            STEP256(I256(c, d, a), b, c, d, a, i + 3);
        }
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
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) lanes[i].h[j] = s[j][i];
}
#endif /* HAVE_X86 */

static int engine_supported(int engine) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (engine == ENGINE_AVX512) return __builtin_cpu_supports("avx512f");
    if (engine == ENGINE_AVX2) return __builtin_cpu_supports("avx2");
#endif
    return engine == ENGINE_SCALAR;
}

/* The lane's buffer is used up: move on to its padding, if it was the last one. */
static void lane_segment_done(Lane *l) {
    if (l->last && l->pad_blocks) {
        l->next = l->pad;
        l->blocks = l->pad_blocks;
        l->pad_blocks = 0;
        l->last = 2; /* the padding is running */
    } else {
        l->fed = 0;
    }
}

/* Hash until at least one fed lane has used up what it was given (GIL released).
   Returns the mask of lanes that have. */
static unsigned hash_until_one_empties(LanesObject *self) {
    unsigned done = 0;
    for (;;) {
        const uint8_t *p[MAXLANES];
        unsigned live = 0;
        Py_ssize_t rounds = PY_SSIZE_T_MAX;
        for (int i = 0; i < self->nlanes; i++) {
            Lane *l = &self->lane[i];
            while (l->fed && l->blocks == 0) { /* an empty buffer, or its padding */
                if (l->fd >= 0 && !l->last) {
                    lane_refill(l, self->bufsize);
                    if (l->err) {
                        l->fed = 0;
                        done |= 1u << i;
                    }
                    continue;
                }
                lane_segment_done(l);
                if (!l->fed) done |= 1u << i;
            }
            if (l->fed) {
                live |= 1u << i;
                p[i] = l->next;
                if (l->blocks < rounds) rounds = l->blocks;
            } else {
                p[i] = ZERO_BLOCK;
            }
        }
        if (done || !live) return done;
        if (self->engine == ENGINE_SCALAR) {
            for (int i = 0; i < self->nlanes; i++) {
                Lane *l = &self->lane[i];
                for (; l->fed && l->blocks; l->blocks--, l->next += 64)
                    compress_scalar(l->h, l->next);
            }
            continue;
        }
#ifdef HAVE_X86
        if (self->engine == ENGINE_AVX512)
            run_avx512(self->lane, p, rounds, (__mmask16)live);
        else
            run_avx2(self->lane, p, rounds, live);
#endif
        for (int i = 0; i < self->nlanes; i++) {
            Lane *l = &self->lane[i];
            if (live & (1u << i)) {
                l->next += 64 * rounds;
                l->blocks -= rounds;
            }
        }
    }
}

static PyObject *Lanes_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"engine", "buffer", NULL};
    const char *name = NULL;
    Py_ssize_t bufsize = 64 * 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|zn", kwlist, &name, &bufsize)) return NULL;
    if (bufsize < 64 || bufsize % 64)
        return PyErr_Format(PyExc_ValueError, "the buffer must be whole 64-byte blocks");
    int engine = -1;
    if (name == NULL) {
        for (int e = ENGINE_AVX512; e >= ENGINE_SCALAR; e--)
            if (engine_supported(e)) {
                engine = e;
                break;
            }
    } else {
        for (int e = 0; e < 3; e++)
            if (strcmp(name, ENGINE_NAMES[e]) == 0) engine = e;
        if (engine < 0) return PyErr_Format(PyExc_ValueError, "unknown MD5 engine %s", name);
        if (!engine_supported(engine))
            return PyErr_Format(PyExc_ValueError, "this CPU lacks %s", name);
    }
    LanesObject *self = (LanesObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->engine = engine;
    self->bufsize = bufsize;
    /* the scalar engine has as many lanes as AVX2, so a scheduler is the same on all */
    self->nlanes = engine == ENGINE_SCALAR ? 8 : ENGINE_LANES[engine];
    for (int i = 0; i < MAXLANES; i++) {
        self->lane[i].buf = NULL;
        self->lane[i].holding = 0;
        lane_reset(&self->lane[i]);
    }
    return (PyObject *)self;
}

static void Lanes_dealloc(LanesObject *self) {
    for (int i = 0; i < MAXLANES; i++) {
        if (self->lane[i].holding) PyBuffer_Release(&self->lane[i].view);
        PyMem_Free(self->lane[i].buf);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lanes_feed(LanesObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"lane", "data", "last", NULL};
    int i, last = 0;
    PyObject *data;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO|p", kwlist, &i, &data, &last)) return NULL;
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    if (i < 0 || i >= self->nlanes) return PyErr_Format(PyExc_IndexError, "no lane %d", i);
    Lane *l = &self->lane[i];
    if (l->fed) return PyErr_Format(PyExc_ValueError, "lane %d still has data", i);
    if (l->holding) {
        PyBuffer_Release(&l->view);
        l->holding = 0;
    }
    if (PyObject_GetBuffer(data, &l->view, PyBUF_SIMPLE) < 0) return NULL;
    l->holding = 1;
    Py_ssize_t len = l->view.len;
    if (!last && len % 64) {
        PyBuffer_Release(&l->view);
        l->holding = 0;
        return PyErr_Format(PyExc_ValueError, "a buffer that is not the last must be whole blocks");
    }
    l->fed = 1;
    l->pad_blocks = 0;
    if (last) {
        lane_set_last(l, (const uint8_t *)l->view.buf, len);
    } else {
        l->next = (const uint8_t *)l->view.buf;
        l->blocks = len / 64;
        l->length += (uint64_t)len;
        l->last = 0;
    }
    Py_RETURN_NONE;
}

static PyObject *Lanes_feed_fd(LanesObject *self, PyObject *args) {
    int i, fd;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iin", &i, &fd, &size)) return NULL;
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    if (i < 0 || i >= self->nlanes) return PyErr_Format(PyExc_IndexError, "no lane %d", i);
    Lane *l = &self->lane[i];
    if (l->fed) return PyErr_Format(PyExc_ValueError, "lane %d still has data", i);
    if (fd < 0) return PyErr_Format(PyExc_ValueError, "bad descriptor %d", fd);
    if (l->buf == NULL && (l->buf = PyMem_Malloc((size_t)self->bufsize)) == NULL)
        return PyErr_NoMemory();
    lane_reset(l);
    l->fd = fd;
    l->size = size;
    l->total = 0;
    l->fed = 1;
    Py_RETURN_NONE;
}

static PyObject *Lanes_run(LanesObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    self->busy = 1;
    unsigned done;
    Py_BEGIN_ALLOW_THREADS done = hash_until_one_empties(self);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (int i = 0; i < self->nlanes; i++) {
        if (!(done & (1u << i))) continue;
        Lane *l = &self->lane[i];
        if (l->holding) {
            PyBuffer_Release(&l->view);
            l->holding = 0;
        }
        PyObject *digest;
        if (l->err) {
            digest = PyLong_FromLong(l->err);
            lane_reset(l);
        } else if (l->last) {
            uint8_t raw[16];
            for (int j = 0; j < 4; j++)
                for (int k = 0; k < 4; k++) raw[4 * j + k] = (uint8_t)(l->h[j] >> (8 * k));
            digest = PyBytes_FromStringAndSize((const char *)raw, 16);
            lane_reset(l);
        } else {
            digest = Py_NewRef(Py_None);
        }
        PyObject *item = digest ? Py_BuildValue("(iN)", i, digest) : NULL;
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyObject *Lanes_reset(LanesObject *self, PyObject *arg) {
    int i = (int)PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (self->busy) return PyErr_Format(PyExc_RuntimeError, "lanes in use by another thread");
    if (i < 0 || i >= self->nlanes) return PyErr_Format(PyExc_IndexError, "no lane %d", i);
    Lane *l = &self->lane[i];
    if (l->holding) {
        PyBuffer_Release(&l->view);
        l->holding = 0;
    }
    lane_reset(l);
    Py_RETURN_NONE;
}

static PyObject *Lanes_get_engine(LanesObject *self, void *Py_UNUSED(c)) {
    return PyUnicode_FromString(ENGINE_NAMES[self->engine]);
}

static PyObject *Lanes_get_lanes(LanesObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(self->nlanes);
}

static PyMethodDef Lanes_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))Lanes_feed, METH_VARARGS | METH_KEYWORDS,
     "feed(lane, data, last=False): the lane's next bytes (whole 64-byte blocks unless last)"},
    {"feed_fd", (PyCFunction)Lanes_feed_fd, METH_VARARGS,
     "feed_fd(lane, fd, size): the lane reads the open file itself, to its end (the caller "
     "keeps and closes fd)"},
    {"run", (PyCFunction)Lanes_run, METH_NOARGS,
     "run() -> [(lane, digest | None | errno)]: hash until one or more lanes have used up "
     "their data (None: feed it more) or their file (an int: a read failed)"},
    {"reset", (PyCFunction)Lanes_reset, METH_O, "reset(lane): drop a lane's stream"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Lanes_getset[] = {
    {"engine", (getter)Lanes_get_engine, NULL, "the engine's name", NULL},
    {"lanes", (getter)Lanes_get_lanes, NULL, "how many streams at once", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject LanesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._md5lanes.Lanes",
    .tp_basicsize = sizeof(LanesObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "MD5 of several streams at once, one a SIMD lane",
    .tp_new = Lanes_new,
    .tp_dealloc = (destructor)Lanes_dealloc,
    .tp_methods = Lanes_methods,
    .tp_getset = Lanes_getset,
};

static PyObject *md5lanes_engines(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(a)) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    for (int e = ENGINE_AVX512; e >= ENGINE_SCALAR; e--) {
        if (!engine_supported(e)) continue;
        PyObject *s = PyUnicode_FromString(ENGINE_NAMES[e]);
        if (s == NULL || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"engines", md5lanes_engines, METH_NOARGS, "engines() -> the engines this CPU runs, best first"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef md5lanes_module = {PyModuleDef_HEAD_INIT, "_md5lanes",
                                             "MD5 of many streams in SIMD lanes", -1,
                                             module_methods};

PyMODINIT_FUNC PyInit__md5lanes(void) {
    if (PyType_Ready(&LanesType) < 0) return NULL;
    PyObject *m = PyModule_Create(&md5lanes_module);
    if (m == NULL) return NULL;
    Py_INCREF(&LanesType);
    if (PyModule_AddObject(m, "Lanes", (PyObject *)&LanesType) < 0) {
        Py_DECREF(&LanesType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
