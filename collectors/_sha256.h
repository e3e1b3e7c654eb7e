/* SHA-256 (FIPS 180-4) for the C copy of small files (collectors/_smallcopy.c): the
   x86 SHA extensions where the CPU has them, portable C elsewhere. Checked against
   hashlib in tests/test_smallcopy.py, for every length a block boundary can matter to. */
#ifndef PRESERVE_SHA256_H
#define PRESERVE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes waiting in block */
    int native;  /* the SHA extensions, chosen once at init */
} Sha256;

/* Does this CPU run the SHA extensions (and the SSE4.1 they are used with)? */
int sha256_native_available(void);
/* native: 1 for the SHA extensions when available, 0 for portable C. */
void sha256_init(Sha256 *h, int native);
void sha256_update(Sha256 *h, const uint8_t *data, size_t n);
void sha256_final(Sha256 *h, uint8_t out[32]);

#endif
