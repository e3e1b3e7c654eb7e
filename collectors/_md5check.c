/* The packages check's common case in C: many files, each opened, checked and hashed in
   the lanes, its MD5 compared with the one the package database recorded, and only the
   files that are not "a regular file whose MD5 is the recorded one" named back.

   The ~106,000 MD5-only dpkg files cost ~4 us each of Python in the lanes' scheduler
   (the open and fstat, its objects, the Read, the compare): ~0.45 core-s, measured, for
   99 % of files that end as nothing (bench/RESULTS.md). Here they cost the system calls
   and the hashing;
   every file named back is done again by the Python path (collectors/filedigest.py),
   which makes its Read, finding and report row exactly as before. So this needs to be
   right only about what it lets pass: a file passes only if it opened (as open_source
   opens: the caller's flags, O_NOATIME dropped where the kernel refuses it), fstat says
   a regular file, it read to its end without an error (the end-of-file rule of
   filedigest._read_into, in _md5stream.c) and the MD5 is the expected one. No Python
   here: it runs with the GIL released. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "_md5stream.h"

static const char HEX[] = "0123456789abcdef";

/* open_source: the flags with O_NOATIME, without it where that is refused (EPERM on a
   file not ours, unless root); -1 on any failure (the Python path says which). */
static int open_like_source(const char *path, int flags, int noatime) {
    int fd;
    do
        fd = open(path, flags | noatime);
    while (fd < 0 && errno == EINTR);
    if (fd < 0 && noatime && (errno == EPERM || errno == EACCES)) do
            fd = open(path, flags);
        while (fd < 0 && errno == EINTR);
    return fd;
}

/* Open and check file k for a lane: its descriptor, or -1 when it goes back to Python
   (not opened, not regular, or an executable the caller wants SHA-256 of too). */
static int start(const CheckBatch *b, ptrdiff_t k, ptrdiff_t *size) {
    if (b->sums[k] == NULL) return -1; /* not a 32-digit hex MD5: Python judges it */
    int fd = open_like_source(b->paths[k], b->flags, b->noatime);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (b->if_exec != NULL && b->if_exec[k] && (st.st_mode & 0111))) {
        close(fd);
        return -1;
    }
    *size = (ptrdiff_t)st.st_size;
    return fd;
}

static int matches(const LaneSet *set, int i, const char *want) {
    uint8_t raw[16];
    char hex[32];
    lane_digest(set, i, raw);
    for (int j = 0; j < 16; j++) {
        hex[2 * j] = HEX[raw[j] >> 4];
        hex[2 * j + 1] = HEX[raw[j] & 15];
    }
    return memcmp(hex, want, 32) == 0;
}

void check_lanes_init(LaneSet *set, CheckLanes *c) {
    for (int i = 0; i < MAXLANES; i++) {
        c->owner[i] = -1;
        c->fd[i] = -1;
        lane_reset(set, i);
    }
}

void check_lanes_close(LaneSet *set, CheckLanes *c) {
    for (int i = 0; i < MAXLANES; i++)
        if (c->fd[i] >= 0) close(c->fd[i]);
    check_lanes_init(set, c);
}

ptrdiff_t md5_check_batch(LaneSet *set, CheckLanes *c, const CheckBatch *b, ptrdiff_t *odd) {
    ptrdiff_t next = 0, nodd = 0;
    for (;;) {
        int idle = 0, live = 0;
        for (int i = 0; i < set->nlanes; i++) {
            while (c->owner[i] < 0 && next < b->n) {
                ptrdiff_t k = next++, size = 0;
                int f = start(b, k, &size);
                if (f < 0) {
                    odd[nodd++] = b->first + k;
                    continue;
                }
                lane_set_file(set, i, f, size);
                memcpy(c->want[i], b->sums[k], 32);
                c->owner[i] = b->first + k;
                c->fd[i] = f;
            }
            if (c->owner[i] < 0)
                idle++;
            else
                live++;
        }
        /* the batch is used up: the next one refills the idle lanes (or, last, drain) */
        if (!live || (idle && !b->last)) return nodd;
        unsigned done = lanes_hash(set);
        for (int i = 0; i < set->nlanes; i++) {
            if (!(done & (1u << i))) continue;
            if (set->lane[i].err || !matches(set, i, c->want[i])) odd[nodd++] = c->owner[i];
            close(c->fd[i]);
            lane_reset(set, i);
            c->owner[i] = -1;
            c->fd[i] = -1;
        }
    }
}
