/* Streams in MD5 lanes: each lane's bytes, padding and file (collectors/_md5stream.c). */
#ifndef PRESERVE_MD5STREAM_H
#define PRESERVE_MD5STREAM_H

#include "_md5simd.h"

typedef struct {
    uint64_t length;      /* bytes hashed or queued so far, for the padding */
    const uint8_t *next;  /* next block of the current segment */
    ptrdiff_t blocks;     /* blocks left in the current segment */
    uint8_t pad[128];     /* the tail and padding of the last bytes */
    int pad_blocks;       /* padding blocks still to run after the bytes */
    int fed;              /* has bytes (or padding) still to hash */
    int last;             /* these bytes are the stream's end (2: the padding is running) */
    int fd;               /* a file the lane reads itself, or -1 */
    ptrdiff_t size;       /* its stat size, for the end-of-file rule */
    uint64_t total;       /* bytes read from it */
    uint8_t *buf;         /* the lane's own read buffer (bufsize bytes) */
    ptrdiff_t carry_off;  /* bytes past the last whole block of a short read */
    ptrdiff_t carry;
    int err;              /* errno of a failed read */
} Lane;

typedef struct {
    int engine;
    int nlanes;
    ptrdiff_t bufsize;
    md5_state state;
    Lane lane[MAXLANES];
} LaneSet;

void lane_reset(LaneSet *set, int i);
/* the stream's next bytes: whole blocks, or (last) any length, padded here */
void lane_set_bytes(LaneSet *set, int i, const uint8_t *data, ptrdiff_t len, int last);
/* the lane reads `fd` itself, to its end */
void lane_set_file(LaneSet *set, int i, int fd, ptrdiff_t size);
/* hash in lockstep until one or more fed lanes are used up: the mask of those (no Python,
   run with the GIL released) */
unsigned lanes_hash(LaneSet *set);
void lane_digest(const LaneSet *set, int i, uint8_t out[16]);

#endif
