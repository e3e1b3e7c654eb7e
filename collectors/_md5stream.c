/* Streams in MD5 lanes: what each lane hashes next (the bytes it was given, then MD5's
   padding, or its own file, read here), and the lockstep loop that runs the lanes until
   one of them is used up. No Python here: it runs with the GIL released. */
#include "_md5stream.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static const uint8_t ZERO_BLOCK[64];

void lane_reset(LaneSet *set, int i) {
    Lane *l = &set->lane[i];
    set->state[0][i] = 0x67452301;
    set->state[1][i] = 0xefcdab89;
    set->state[2][i] = 0x98badcfe;
    set->state[3][i] = 0x10325476;
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
static void set_last(Lane *l, const uint8_t *data, ptrdiff_t len) {
    l->next = data;
    l->blocks = len / 64;
    l->length += (uint64_t)len;
    l->last = 1;
    ptrdiff_t tail = len % 64;
    memset(l->pad, 0, sizeof l->pad);
    memcpy(l->pad, data + 64 * l->blocks, (size_t)tail);
    l->pad[tail] = 0x80;
    l->pad_blocks = tail < 56 ? 1 : 2;
    uint64_t bits = l->length * 8;
    for (int k = 0; k < 8; k++) l->pad[64 * l->pad_blocks - 8 + k] = (uint8_t)(bits >> (8 * k));
}

void lane_set_bytes(LaneSet *set, int i, const uint8_t *data, ptrdiff_t len, int last) {
    Lane *l = &set->lane[i];
    l->fed = 1;
    l->pad_blocks = 0;
    if (last) {
        set_last(l, data, len);
    } else {
        l->next = data;
        l->blocks = len / 64;
        l->length += (uint64_t)len;
        l->last = 0;
    }
}

void lane_set_file(LaneSet *set, int i, int fd, ptrdiff_t size) {
    lane_reset(set, i);
    Lane *l = &set->lane[i];
    l->fd = fd;
    l->size = size;
    l->total = 0;
    l->fed = 1;
}

void lane_digest(const LaneSet *set, int i, uint8_t out[16]) {
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 4; k++) out[4 * j + k] = (uint8_t)(set->state[j][i] >> (8 * k));
}

/* The next piece of a lane's file, with filedigest._read_into's end-of-file rule: the
   end is a read of nothing, or a short read at or past the stat size (a stat size of 0
   is read on to the end). Bytes past the last whole block wait for the next read. */
static void lane_refill(Lane *l, ptrdiff_t bufsize) {
    if (l->carry) memmove(l->buf, l->buf + l->carry_off, (size_t)l->carry);
    ptrdiff_t room = bufsize - l->carry;
    ssize_t n;
    do
        n = read(l->fd, l->buf + l->carry, (size_t)room);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        l->err = errno ? errno : EIO;
        return;
    }
    l->total += (uint64_t)n;
    ptrdiff_t have = l->carry + n;
    if (n == 0 || (n < room && l->size > 0 && l->total >= (uint64_t)l->size)) {
        l->carry = 0;
        set_last(l, l->buf, have);
        return;
    }
    ptrdiff_t whole = have - have % 64;
    l->next = l->buf;
    l->blocks = whole / 64;
    l->length += (uint64_t)whole;
    l->carry_off = whole;
    l->carry = have - whole;
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

unsigned lanes_hash(LaneSet *self) {
    unsigned done = 0;
    for (;;) {
        const uint8_t *p[MAXLANES];
        unsigned live = 0;
        ptrdiff_t rounds = PTRDIFF_MAX;
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
                    md5_scalar(self->state, i, l->next);
            }
            continue;
        }
        if (self->engine == ENGINE_AVX512)
            md5_avx512(self->state, p, rounds, live);
        else
            md5_avx2(self->state, p, rounds, live);
        for (int i = 0; i < self->nlanes; i++) {
            Lane *l = &self->lane[i];
            if (live & (1u << i)) {
                l->next += 64 * rounds;
                l->blocks -= rounds;
            }
        }
    }
}
