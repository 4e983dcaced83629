/* Slows PostgreSQL's WAL flushes down by a fixed delay, to benchmark on a slower disk than this one.
 *
 * Loaded with LD_PRELOAD into the postmaster (and so into every backend and the WAL writer):
 * fdatasync and fsync of a file under pg_wal/ flush as usual, then sleep FLOW45_FSYNC_DELAY_US
 * microseconds. Other files are left alone, so checkpoints keep the disk's own speed.
 * PostgreSQL must flush its WAL with fdatasync (wal_sync_method = fdatasync): the open_*sync
 * methods write with O_DSYNC and call neither. Built by benchmarks/slow_disk.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long delay_us = -1;

static int is_wal(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0)
        return 0;
    path[n] = '\0';
    return strstr(path, "/pg_wal") != NULL;
}

static void slow_down(int fd)
{
    if (delay_us < 0) {
        const char *text = getenv("FLOW45_FSYNC_DELAY_US");
        delay_us = text ? atol(text) : 0;
    }
    if (delay_us > 0 && is_wal(fd))
        usleep((useconds_t)delay_us);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int result = real(fd);
    slow_down(fd);
    return result;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int result = real(fd);
    slow_down(fd);
    return result;
}
