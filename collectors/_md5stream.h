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

/* A batch for md5_check_batch (collectors/_md5check.c): n host paths, the MD5 each should
   have (32 lowercase hex digits, or NULL: not checked here), whether each goes back when
   its mode has an execute bit (NULL: none does), and open_source's open flags. Numbered
   from `first` on, across the batches of one CheckLanes. */
typedef struct {
    ptrdiff_t n, first;
    const char *const *paths;
    const char *const *sums;
    const uint8_t *if_exec;
    int flags, noatime;
    int last; /* no batch follows: finish every file */
} CheckBatch;

/* The files in the lanes between batches: a file that holds a lane (a large one) goes on
   in the next batch, so the lanes never wait for it to end. */
typedef struct {
    ptrdiff_t owner[MAXLANES]; /* the number of the lane's file, or -1 */
    int fd[MAXLANES];
    char want[MAXLANES][32];
} CheckLanes;

void check_lanes_init(LaneSet *set, CheckLanes *c);
/* Open, check and hash the batch's files in the lanes, until each is started (last: and
   every file ended); the numbers of the ended files that are not a regular file read whole
   with the expected MD5 put in odd[] (room for n + MAXLANES), how many returned. No
   Python: run with the GIL released. */
ptrdiff_t md5_check_batch(LaneSet *set, CheckLanes *c, const CheckBatch *b, ptrdiff_t *odd);
/* close what the lanes hold (the object goes away) */
void check_lanes_close(LaneSet *set, CheckLanes *c);

#endif
