/* tests/test_image.py's failing disk: a one-file FUSE file system whose /disk is
   BACKING, except that a read touching any of the byte ranges given as OFFSET:LENGTH
   fails with EIO, as a disk's bad sectors do. "delay=MICROSECONDS" slows every read
   (a disk slow enough to stop half-way). Reads are direct_io, so each reaches us with
   its own offset and size, never widened to a page. "ghosts" also lists two names that
   are not there: "gone" (ENOENT, as a file removed since it was listed) and "broken"
   (EIO), for tests/test_bodylist.py. Built by the test with gcc. */
#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

static int backing = -1;
static long long bad[64][2];
static int nbad = 0;
static long delay_us = 0;
static int ghosts = 0;

static int bf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; return 0; }
    if (ghosts && strcmp(path, "/broken") == 0) return -EIO;
    if (strcmp(path, "/disk") != 0) return -ENOENT;
    struct stat b;
    if (fstat(backing, &b) < 0) return -errno;
    st->st_mode = S_IFREG | 0444; st->st_nlink = 1; st->st_size = b.st_size;
    return 0;
}

static int bf_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)off; (void)fi; (void)flags;
    if (strcmp(path, "/") != 0) return -ENOENT;
    fill(buf, ".", NULL, 0, 0); fill(buf, "..", NULL, 0, 0); fill(buf, "disk", NULL, 0, 0);
    if (ghosts) { fill(buf, "gone", NULL, 0, 0); fill(buf, "broken", NULL, 0, 0); }
    return 0;
}

static int bf_open(const char *path, struct fuse_file_info *fi) {
    if (strcmp(path, "/disk") != 0) return -ENOENT;
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EACCES;
    fi->direct_io = 1; /* every read reaches us with its own offset and size */
    return 0;
}

static int bf_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path; (void)fi;
    if (delay_us) usleep(delay_us);
    for (int i = 0; i < nbad; i++)
        if (off < bad[i][0] + bad[i][1] && bad[i][0] < off + (off_t)size) return -EIO;
    ssize_t n = pread(backing, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static const struct fuse_operations ops = {
    .getattr = bf_getattr, .readdir = bf_readdir, .open = bf_open, .read = bf_read,
};

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: badfs BACKING MOUNT [OFFSET:LENGTH...] [delay=US] [ghosts]\n"); return 2; }
    backing = open(argv[1], O_RDONLY);
    if (backing < 0) { perror(argv[1]); return 1; }
    for (int i = 3; i < argc; i++) {
        if (sscanf(argv[i], "delay=%ld", &delay_us) == 1) continue;
        if (strcmp(argv[i], "ghosts") == 0) { ghosts = 1; continue; }
        if (nbad < 64 && sscanf(argv[i], "%lld:%lld", &bad[nbad][0], &bad[nbad][1]) == 2) nbad++;
    }
    char *fargv[] = {argv[0], "-f", "-s", "-o", "ro,allow_other", argv[2], NULL};
    return fuse_main(6, fargv, &ops, NULL);
}
