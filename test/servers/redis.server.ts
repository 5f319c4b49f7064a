import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinary, freePort, ServerProcess, startServer } from './server.process';

/**
 * An LD_PRELOAD library that shifts the wall clock (CLOCK_REALTIME, gettimeofday, time) of the
 * process it is loaded in by the offset in ms written in the file named by NDL_CLOCK_OFFSET_FILE,
 * re-read every 10 ms, so a test can step a server's clock back while it runs. Not libfaketime:
 * Debian's redis-server uses the system jemalloc, and libfaketime 0.9.10 hangs it at startup
 * (jemalloc's init calls clock_gettime while libfaketime initialises: wolfcw/libfaketime#130).
 * This one calls the kernel directly and allocates nothing, so it is safe inside malloc's init.
 */
const CLOCK_SHIM_SOURCE = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_ns = 0;
static long long read_at_ns = -1;

static long long offset(void) {
  struct timespec mono;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &mono);
  long long now = mono.tv_sec * 1000000000LL + mono.tv_nsec;
  long long at = __atomic_load_n(&read_at_ns, __ATOMIC_RELAXED);
  if (at >= 0 && now - at < 10000000LL) return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
  __atomic_store_n(&read_at_ns, now, __ATOMIC_RELAXED);
  const char *path = getenv("NDL_CLOCK_OFFSET_FILE");
  int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  if (fd >= 0) {
    char text[32];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n > 0) {
      long long ms = 0;
      int i = text[0] == '-' ? 1 : 0;
      text[n] = 0;
      for (int j = i; text[j] >= '0' && text[j] <= '9'; j++) ms = ms * 10 + (text[j] - '0');
      __atomic_store_n(&offset_ns, (i ? -ms : ms) * 1000000LL, __ATOMIC_RELAXED);
    }
  }
  return __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  int result = syscall(SYS_clock_gettime, id, ts);
  if (result == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
    long long ns = ts->tv_sec * 1000000000LL + ts->tv_nsec + offset();
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
  }
  return result;
}

int gettimeofday(struct timeval *tv, void *tz) {
  struct timespec ts;
  (void)tz;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
  if (tv) {
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return 0;
}

time_t time(time_t *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}
`;

/** The clock shim, compiled once per source version (jest workers share it by its hash). */
function clockShim(): string {
  const hash = createHash('sha1').update(CLOCK_SHIM_SOURCE).digest('hex').slice(0, 12);
  const library = join(tmpdir(), `ndl-clock-shim-${hash}.so`);
  if (existsSync(library)) return library;
  const cc = ensureBinary('cc', 'gcc');
  const source = join(tmpdir(), `ndl-clock-shim-${hash}-${process.pid}.c`);
  const built = `${library}.${process.pid}`;
  writeFileSync(source, CLOCK_SHIM_SOURCE);
  try {
    execFileSync(cc, ['-shared', '-fPIC', '-O2', '-o', built, source], { timeout: 60_000 });
  } finally {
    rmSync(source, { force: true });
  }
  renameSync(built, library);
  return library;
}

/**
 * Sets the wall-clock offset, in ms (negative: behind), of every server started with
 * `clockOffsetFile: file`; they see it within 10 ms. Written whole, then renamed into place, so a
 * server never reads half of it.
 */
export function setClockOffset(file: string, offsetMs: number): void {
  const partial = `${file}.${process.pid}.tmp`;
  writeFileSync(partial, String(Math.trunc(offsetMs)));
  renameSync(partial, file);
}

/**
 * Starts a throwaway redis-server on a free 127.0.0.1 port, no persistence. Pass `port` (and
 * `dir`) to restart one on the same address. With `clockOffsetFile`, the server's wall clock is
 * shifted by the offset in that file (see {@link setClockOffset}; no file: no shift), through
 * `env`, which execs redis-server, so the handle's PID is the server's.
 */
export async function startRedis(
  options: { port?: number; dir?: string; extraArgs?: string[]; clockOffsetFile?: string } = {},
): Promise<ServerProcess> {
  const redis = ensureBinary('redis-server', 'redis-server');
  const port = options.port ?? (await freePort());
  const { clockOffsetFile } = options;
  const wrapper =
    clockOffsetFile === undefined
      ? []
      : [`LD_PRELOAD=${clockShim()}`, `NDL_CLOCK_OFFSET_FILE=${clockOffsetFile}`, redis];
  return startServer({
    name: 'redis',
    binary: clockOffsetFile === undefined ? redis : ensureBinary('env', 'coreutils'),
    port,
    dir: options.dir,
    args: (dir) => [
      ...wrapper,
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--protected-mode',
      'yes',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--daemonize',
      'no',
      ...(options.extraArgs ?? []),
    ],
  });
}
