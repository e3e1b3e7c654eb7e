/* The kit's entry point: a static program that starts the frozen Python program through
 * the kit's OWN dynamic loader, so nothing of the host's loader configuration reaches it.
 *
 * A dynamically linked program is started by the host's ld.so, which reads
 * /etc/ld.so.preload, LD_PRELOAD and LD_AUDIT and maps what they name into the process
 * before main(): that is where user-space rootkits live. This launcher is statically
 * linked (no loader runs for it at all) and does three things:
 *
 *   1. drops every LD_* variable and the other variables glibc treats as unsafe for
 *      set-uid programs (GCONV_PATH, GLIBC_TUNABLES, LOCPATH, ...) from the environment;
 *      the NAMES it dropped (never the values) are passed on in PRESERVE_KIT_DROPPED so
 *      the journal can say the host tried;
 *   2. finds its own folder KIT (from /proc/self/exe, else argv[0]), after checking that
 *      /proc and /sys are the kernel's proc and sysfs;
 *   3. execs KIT/_internal/glibc/ld-linux-x86-64.so.2 --inhibit-cache --library-path
 *      KIT/_internal/glibc:KIT/_internal KIT/_internal/NAME ARGS..., where NAME is this
 *      launcher's own name (preserve or verify). The bundled loader is the build
 *      machine's, with its compiled-in "/etc/ld.so.preload" patched (same length) to a
 *      path in /proc that cannot exist, and its default library directories likewise
 *      (agent/kitloader.py); --inhibit-cache keeps it off /etc/ld.so.cache.
 *
 * PyInstaller's bootloader restarts itself once to set LD_LIBRARY_PATH; that restart
 * would go through the host's loader, so the launcher sets the two variables that tell
 * it it already runs as the restarted process (_PYI_ARCHIVE_FILE, _PYI_PARENT_PROCESS_LEVEL).
 *
 * Built by packaging/build-kit with gcc -static -O2. Uses nothing but libc's static
 * start-up, string functions and execve. */
#include <errno.h>
#include <limits.h>
#include <sys/vfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static const char *const UNSAFE[] = {
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
    "LOCPATH", "MALLOC_TRACE", "MALLOC_CHECK_", "MALLOC_PERTURB_", "NIS_PATH", "NLSPATH",
    "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR", "PYTHONPATH", "PYTHONHOME",
    "PYTHONSTARTUP", "PYTHONINSPECT", NULL,
};
/* Set by the launcher itself (or by a kit parent for its child): replaced, not reported. */
static const char *const REPLACED[] = {
    "PRESERVE_KIT_DROPPED", "_PYI_ARCHIVE_FILE", "_PYI_PARENT_PROCESS_LEVEL",
    "_PYI_APPLICATION_HOME_DIR", "_PYI_SPLASH_IPC", "_PYI_LINUX_PROCESS_NAME",
    "PYINSTALLER_RESET_ENVIRONMENT", "LC_ALL", NULL,
};

static int listed(const char *entry, size_t len, const char *const *names) {
    for (const char *const *u = names; *u; u++)
        if (strlen(*u) == len && strncmp(entry, *u, len) == 0)
            return 1;
    return 0;
}

/* 0: keep, 1: drop and report the name, 2: drop silently. */
static int unsafe(const char *entry) {
    size_t len = strcspn(entry, "=");
    if (listed(entry, len, REPLACED))
        return 2;
    if (len >= 3 && strncmp(entry, "LD_", 3) == 0)
        return 1;
    return listed(entry, len, UNSAFE);
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "preserve kit: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

int main(int argc, char **argv) {
    static char self[PATH_MAX], kit[PATH_MAX], loader[PATH_MAX], libs[2 * PATH_MAX + 2];
    static char program[PATH_MAX], dropped[4096] = "PRESERVE_KIT_DROPPED=";
    static char archive[PATH_MAX + 32];
    struct statfs fs;
    /* The bundled loader's preload list is /proc/0/ld.preload and its default library
     * directories are under /proc/0 and /sys: only the kernel's proc and sysfs guarantee
     * that no file can exist there. */
    if (statfs("/proc", &fs) != 0 || fs.f_type != 0x9fa0)
        die("/proc is not the kernel's proc filesystem; mount it (mount -t proc proc /proc) "
            "and start the kit again", NULL);
    if (statfs("/sys", &fs) != 0 || fs.f_type != 0x62656572)
        die("/sys is not the kernel's sysfs; mount it (mount -t sysfs sysfs /sys) and start "
            "the kit again", NULL);
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
    } else if (argc > 0 && strchr(argv[0], '/') && realpath(argv[0], self)) {
        /* no /proc (a bare chroot): the path we were started by */
    } else {
        die("cannot find the kit folder (no /proc/self/exe; start it by its path, "
            "e.g. ./preserve)", NULL);
    }
    char *slash = strrchr(self, '/');
    if (!slash || strlen(slash + 1) == 0)
        die("cannot tell this program's name from", self);
    const char *name = slash + 1;
    size_t kit_len = (size_t)(slash - self);
    memcpy(kit, self, kit_len);
    kit[kit_len] = 0;
    if (strchr(kit, ':'))
        die("the kit's folder name holds a ':', which a library path cannot carry; "
            "copy the kit to a folder without one", kit);
    if (snprintf(loader, sizeof loader, "%s/_internal/glibc/ld-linux-x86-64.so.2", kit) >=
            (int)sizeof loader ||
        snprintf(libs, sizeof libs, "%s/_internal/glibc:%s/_internal", kit, kit) >=
            (int)sizeof libs ||
        snprintf(program, sizeof program, "%s/_internal/%s", kit, name) >= (int)sizeof program ||
        snprintf(archive, sizeof archive, "_PYI_ARCHIVE_FILE=%s", program) >= (int)sizeof archive)
        die("the kit's path is too long", kit);

    size_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    char **env = calloc(count + 5, sizeof *env);
    if (!env)
        die("out of memory", NULL);
    size_t kept = 0, used = strlen(dropped);
    for (char **e = environ; *e; e++) {
        int verdict = unsafe(*e);
        if (verdict == 0)
            env[kept++] = *e;
        if (verdict != 1)
            continue;
        size_t len = strcspn(*e, "=");
        if (used + len + 2 < sizeof dropped) {
            if (used > strlen("PRESERVE_KIT_DROPPED="))
                dropped[used++] = ',';
            memcpy(dropped + used, *e, len);
            used += len;
            dropped[used] = 0;
        }
    }
    if (used > strlen("PRESERVE_KIT_DROPPED="))
        env[kept++] = dropped;
    /* Tell PyInstaller's bootloader it is already the restarted process: its own restart
     * would exec the program through the host's loader (it knows no --library-path). */
    env[kept++] = archive;
    env[kept++] = "_PYI_PARENT_PROCESS_LEVEL=0";
    /* The C locale: glibc reads no locale files of the host, and Python (3.7+) runs in
     * UTF-8 mode, as it does in any C locale. */
    env[kept++] = "LC_ALL=C";
    env[kept] = NULL;

    char **args = calloc((size_t)argc + 8, sizeof *args);
    if (!args)
        die("out of memory", NULL);
    size_t a = 0;
    args[a++] = loader;
    args[a++] = "--inhibit-cache";
    args[a++] = "--library-path";
    args[a++] = libs;
    args[a++] = program;
    for (int i = 1; i < argc; i++)
        args[a++] = argv[i];
    args[a] = NULL;
    execve(loader, args, env);
    die("cannot start the kit's own loader", strerror(errno));
    return 2;
}
