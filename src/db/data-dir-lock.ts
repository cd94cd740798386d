/**
 * The single-owner lock on DATA_DIR: the embedded PGlite database in `DATA_DIR/pgdata` has no
 * cross-process locking of its own, and two processes writing it destroy it.
 *
 * The lock is a PID file, like Postgres' `postmaster.pid`: `DATA_DIR/.owner.lock` holds JSON
 * `{pid, hostname, startedAt, processStartTime, bootId}`. Only the death of the owner releases it;
 * no timer ever does.
 *
 * - Why not proper-lockfile (what this replaced): it is staleness-based. The owner refreshes an
 *   mtime every second and a lock older than 5 s is taken over, so an owner whose event loop is
 *   blocked (a CPU-heavy request, a debugger, SIGSTOP, a VM pause) is displaced while it is alive
 *   and still writing. That is how a data directory was destroyed. It also refused restarts for
 *   5 s after a crash.
 * - Why not flock(2)/fcntl locks: Node has no API for them; they need a native addon (fs-ext), and
 *   npm here does not run install scripts, so addons are not an option.
 *
 * How a start decides (see {@link lockDataDir}):
 * 1. The file is created atomically: the JSON is written to a temp file, fsynced, then hard-linked
 *    into place (`link` fails with EEXIST if the file exists; `open(..., 'wx')` where links are
 *    unsupported).
 * 2. If it exists and names this host: the owner is alive when `kill(pid, 0)` succeeds or fails
 *    with EPERM. A stopped (SIGSTOP) process is alive. Its `/proc/<pid>/stat` start time must also
 *    match the recorded one (when readable), which tells a reused PID apart; a different boot id
 *    means the owner died with an earlier boot. A file naming our own PID, not held by this
 *    process, is left by an earlier run that had the same PID (a container restarting as PID 1).
 *    Alive → refused with {@link DataDirLockedError}. Dead → the stale file is renamed to a unique
 *    name (only one process can rename a given file), checked to be the very file judged stale
 *    (same inode; otherwise it is put back), removed, and the atomic create is retried.
 * 3. If it names another host: refused. This host cannot check a PID there; the message says how
 *    to remove the file once that host's gateway is known to be stopped.
 *
 * On Linux the owner also binds an abstract Unix socket named after DATA_DIR's device and inode for
 * as long as it holds the lock. The kernel releases it when the process dies (never earlier, not
 * even when the process is stopped), so it needs no cleanup, and binding it serialises concurrent
 * starters: judging a stale file and replacing it happen while no other process on this host can
 * do the same. It also keeps a second process out if someone deletes the PID file by hand while
 * the owner runs. (Any local user could squat the name; the worst that does is refuse a start.)
 *
 * Release = unlink on clean close, only if the file is still ours (same inode and content). A
 * process that dies without releasing leaves a file naming a dead PID, which the next start takes
 * over at once.
 *
 * One file (~450 lines) because taking, checking and releasing the lock share the owner-identity
 * rules (pid, process start time, boot id, host) that make it safe; split, they could disagree.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The lock file's name inside DATA_DIR. (The name proper-lockfile used, so a gateway of an older version refuses to start beside a newer one: its `rmdir` of this file fails.) */
export const LOCK_FILE_NAME = '.owner.lock';

/** How long a start waits for another process that is itself in the middle of taking the lock. Waiting never displaces anyone: on timeout the start is refused. */
const INTERLOCK_WAIT_MS = 10_000;

/** proper-lockfile (gateway versions before the PID file) refreshed its lock directory's mtime every second and gave it up after 5 s. */
const LEGACY_LOCK_STALE_MS = 10_000;

/** What the lock file says about its owner. */
export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO time the lock was taken. */
  startedAt: string;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot) when the lock was taken; null where there is no /proc. */
  processStartTime: number | null;
  /** /proc/sys/kernel/random/boot_id when the lock was taken; null where there is none. */
  bootId: string | null;
}

/** Raised when DATA_DIR is owned by another process (or its owner cannot be checked from here). */
export class DataDirLockedError extends Error {
  constructor(
    message: string,
    /** The lock file, for tools that want to show it. */
    readonly lockFile: string,
    /** The owner named in the lock file, when it could be read. */
    readonly owner?: LockOwner,
  ) {
    super(message);
    this.name = 'DataDirLockedError';
  }
}

/** A held DATA_DIR lock. */
export interface DataDirLock {
  lockFile: string;
  owner: LockOwner;
  /** Removes the lock file if it is still ours and frees the interlock. Idempotent. */
  release(): Promise<void>;
}

export interface LockDataDirOptions {
  /** One line per notable event (a stale lock taken over). */
  log?: (msg: string) => void;
}

const SHARED_ADVICE =
  'PGlite cannot be shared between processes (concurrent writers corrupt it): stop the other process, ' +
  'choose another DATA_DIR, or run Postgres and set DATABASE_URL to scale out.';

function describeOwner(owner: LockOwner): string {
  return `pid ${owner.pid} on host ${owner.hostname}, since ${owner.startedAt}`;
}

function lockedByLiveOwner(dataDir: string, lockFile: string, owner: LockOwner): DataDirLockedError {
  return new DataDirLockedError(
    `DATA_DIR ${dataDir} is in use by another gateway process (${describeOwner(owner)}; lock file ${lockFile}). ` +
      `The lock is held until that process exits, however long it is busy or stopped. ${SHARED_ADVICE}`,
    lockFile,
    owner,
  );
}

function lockedByOtherHost(dataDir: string, lockFile: string, owner: LockOwner): DataDirLockedError {
  return new DataDirLockedError(
    `DATA_DIR ${dataDir} is locked by a gateway on another host (${describeOwner(owner)}; lock file ${lockFile}). ` +
      `This host (${os.hostname()}) cannot check whether that process is still running, so it will not take the lock over. ` +
      `If host ${owner.hostname} is gone or its gateway is stopped for sure, delete ${lockFile} and start again; ` +
      'never while that gateway may still be running: two processes on one data directory destroy the database.',
    lockFile,
    owner,
  );
}

/** Processes on this host that hold a lock, by DATA_DIR device:inode (a second open in the same process is refused too). */
const heldHere = new Set<string>();

let cachedBootId: string | null | undefined;
function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

/**
 * State (field 3) and start time (field 22, clock ticks since boot) from /proc/<pid>/stat, or
 * null where it cannot be read (no /proc, or the process is gone). The command name (field 2) is
 * in parentheses and may itself contain spaces and parentheses, so fields are counted from the
 * last ')'.
 */
async function procStat(pid: number): Promise<{ state: string; startTime: number } | null> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state), so field 22 is fields[19].
    const [state, startTime] = [fields[0], fields[19]];
    return state && startTime && /^\d+$/.test(startTime) ? { state, startTime: Number(startTime) } : null;
  } catch {
    return null;
  }
}

/** This process's start time (field 22 of /proc/<pid>/stat), or null where there is no /proc. */
export async function processStartTime(pid: number): Promise<number | null> {
  return (await procStat(pid))?.startTime ?? null;
}

/** True when a process with this PID exists on this host (stopped, zombie or owned by another user included). */
function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM') return true;
    if (code === 'ESRCH') return false;
    throw err;
  }
}

function parseOwner(text: string): LockOwner | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const v = value as Partial<LockOwner> | null;
  if (!v || typeof v !== 'object') return undefined;
  if (typeof v.pid !== 'number' || !Number.isSafeInteger(v.pid) || v.pid <= 0) return undefined;
  if (typeof v.hostname !== 'string' || v.hostname === '') return undefined;
  return {
    pid: v.pid,
    hostname: v.hostname,
    startedAt: typeof v.startedAt === 'string' ? v.startedAt : 'an unknown time',
    processStartTime: typeof v.processStartTime === 'number' && Number.isSafeInteger(v.processStartTime) ? v.processStartTime : null,
    bootId: typeof v.bootId === 'string' ? v.bootId : null,
  };
}

/** What is at the lock file's path right now. */
type Verdict =
  | { state: 'absent' }
  | { state: 'live'; owner: LockOwner }
  | { state: 'other-host'; owner: LockOwner }
  | { state: 'stale'; owner: LockOwner; why: string; dev: number; ino: number }
  | { state: 'unreadable'; why: string }
  | { state: 'legacy'; live: boolean; ageMs: number };

/** Reads the lock file and judges its owner. Never changes anything. */
async function inspect(lockFile: string): Promise<Verdict> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(lockFile, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent' };
    throw err;
  }
  let text: string;
  let st: import('node:fs').Stats;
  try {
    st = await handle.stat();
    if (st.isDirectory()) {
      const ageMs = Date.now() - st.mtimeMs;
      return { state: 'legacy', live: ageMs < LEGACY_LOCK_STALE_MS, ageMs };
    }
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  const owner = parseOwner(text);
  if (!owner) return { state: 'unreadable', why: text.trim() === '' ? 'it is empty' : 'it does not hold a gateway lock record' };
  if (owner.hostname !== os.hostname()) return { state: 'other-host', owner };
  const stale = (why: string): Verdict => ({ state: 'stale', owner, why, dev: st.dev, ino: st.ino });
  const myBoot = bootId();
  if (owner.bootId && myBoot && owner.bootId !== myBoot) return stale(`pid ${owner.pid} ran before this host last booted`);
  if (owner.pid === process.pid) return stale(`it names this process's own pid ${owner.pid}, left by an earlier run with the same pid`);
  if (!pidExists(owner.pid)) return stale(`pid ${owner.pid} is not running`);
  const proc = await procStat(owner.pid);
  // A zombie has exited (its parent has not reaped it yet); it writes nothing any more.
  if (proc && (proc.state === 'Z' || proc.state === 'X')) return stale(`pid ${owner.pid} has exited`);
  if (proc && owner.processStartTime !== null && proc.startTime !== owner.processStartTime) {
    return stale(`pid ${owner.pid} now belongs to another process`);
  }
  return { state: 'live', owner };
}

/** Turns a verdict that forbids taking the lock into the error to throw; undefined when the lock may be taken (or taken over). */
function refusal(dataDir: string, lockFile: string, v: Verdict): DataDirLockedError | undefined {
  switch (v.state) {
    case 'live':
      return lockedByLiveOwner(dataDir, lockFile, v.owner);
    case 'other-host':
      return lockedByOtherHost(dataDir, lockFile, v.owner);
    case 'unreadable':
      return new DataDirLockedError(
        `DATA_DIR ${dataDir} has a lock file that cannot be read (${lockFile}: ${v.why}). No gateway writes such a file, ` +
          `so it is not taken over automatically. If no gateway is running on ${dataDir}, delete ${lockFile} and start again.`,
        lockFile,
      );
    case 'legacy':
      return v.live
        ? new DataDirLockedError(
            `DATA_DIR ${dataDir} is in use by a gateway of an older version (its lock directory ${lockFile} was refreshed ` +
              `${Math.round(v.ageMs / 1000)} s ago). ${SHARED_ADVICE}`,
            lockFile,
          )
        : undefined;
    default:
      return undefined;
  }
}

function listenOn(name: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen({ path: name }, () => {
      server.off('error', reject);
      server.unref();
      resolve(server);
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Binds the abstract socket that stands for DATA_DIR on this host (Linux only; elsewhere there is
 * none and the PID file works alone). While another process holds it, the lock file is checked: a
 * live owner is refused at once; otherwise the holder is a concurrent starter, waited for briefly.
 */
async function acquireInterlock(key: string, dataDir: string, lockFile: string): Promise<net.Server | undefined> {
  if (process.platform !== 'linux') return undefined;
  const name = `\0volumes-gateway:data-dir:${key}`;
  const deadline = Date.now() + INTERLOCK_WAIT_MS;
  for (;;) {
    try {
      return await listenOn(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') return undefined;
    }
    const verdict = await inspect(lockFile);
    const refused = refusal(dataDir, lockFile, verdict);
    if (refused) throw refused;
    if (Date.now() > deadline) {
      throw new DataDirLockedError(
        `DATA_DIR ${dataDir} is in use by another process on this host: it holds the DATA_DIR interlock ` +
          `(${verdict.state === 'absent' ? 'no lock file' : `lock file ${lockFile}: ${verdict.state}`}), ` +
          `and has for ${INTERLOCK_WAIT_MS / 1000} s. ${SHARED_ADVICE}`,
        lockFile,
      );
    }
    await sleep(100);
  }
}

/** Writes `content` to a new file and flushes it to disk before anyone can see it under its final name. */
async function writeNewFileSynced(file: string, content: string): Promise<void> {
  const handle = await fs.open(file, 'wx', 0o644);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Creates the lock file atomically; false if it already exists. */
async function createLockFile(lockFile: string, content: string): Promise<boolean> {
  const tmp = `${lockFile}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
  await writeNewFileSynced(tmp, content);
  try {
    await fs.link(tmp, lockFile);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw err;
  } finally {
    await fs.unlink(tmp).catch(() => {});
  }
  // A filesystem without hard links: O_EXCL create is just as exclusive (the content appears a moment later).
  try {
    await writeNewFileSynced(lockFile, content);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * Moves the stale lock file (the one with this inode) out of the way. Renaming to a unique name
 * succeeds for one process only; if what got renamed is not the file judged stale (another process
 * replaced it in between), it is put back under its name.
 */
async function removeStale(lockFile: string, stale: Extract<Verdict, { state: 'stale' }>): Promise<void> {
  const aside = `${lockFile}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await fs.rename(lockFile, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else moved it
    throw err;
  }
  const moved = await fs.lstat(aside);
  if (moved.ino !== stale.ino || moved.dev !== stale.dev) {
    try {
      await fs.link(aside, lockFile);
    } catch (err) {
      throw new Error(
        `Taking over the stale DATA_DIR lock ${lockFile} raced with other starting processes; the current lock was kept as ` +
          `${aside}. Stop every gateway on this DATA_DIR, delete ${lockFile}* and start one again.`,
        { cause: err },
      );
    }
    await fs.unlink(aside);
    return;
  }
  await fs.unlink(aside);
}

/**
 * Takes DATA_DIR for this process until {@link DataDirLock.release} or process death.
 * Creates DATA_DIR if needed.
 * @throws DataDirLockedError when another live process (or another host) holds it
 */
export async function lockDataDir(dataDir: string, opts: LockDataDirOptions = {}): Promise<DataDirLock> {
  await fs.mkdir(dataDir, { recursive: true });
  const dirStat = await fs.stat(dataDir);
  const key = `${dirStat.dev}:${dirStat.ino}`;
  const lockFile = path.join(dataDir, LOCK_FILE_NAME);
  if (heldHere.has(key)) {
    throw new DataDirLockedError(`DATA_DIR ${dataDir} is already open in this process (pid ${process.pid}). ${SHARED_ADVICE}`, lockFile);
  }
  const interlock = await acquireInterlock(key, dataDir, lockFile);
  heldHere.add(key);
  const owner: LockOwner = {
    pid: process.pid,
    hostname: os.hostname(),
    startedAt: new Date().toISOString(),
    processStartTime: await processStartTime(process.pid),
    bootId: bootId(),
  };
  const content = `${JSON.stringify(owner, null, 2)}\n`;
  let mine: import('node:fs').Stats;
  try {
    for (let attempt = 1; ; attempt++) {
      if (await createLockFile(lockFile, content)) {
        mine = await fs.lstat(lockFile);
        break;
      }
      if (attempt >= 10)
        throw new Error(
          `Could not create the DATA_DIR lock ${lockFile}: it keeps reappearing. Is another process starting and stopping on ${dataDir}?`,
        );
      const verdict = await inspect(lockFile);
      const refused = refusal(dataDir, lockFile, verdict);
      if (refused) throw refused;
      if (verdict.state === 'stale') {
        opts.log?.(`taking over the stale DATA_DIR lock ${lockFile} (${describeOwner(verdict.owner)}): ${verdict.why}`);
        await removeStale(lockFile, verdict);
      } else if (verdict.state === 'legacy') {
        opts.log?.(`removing the stale lock directory of an older gateway version (${lockFile})`);
        await fs.rmdir(lockFile).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      }
    }
  } catch (err) {
    heldHere.delete(key);
    interlock?.close();
    throw err;
  }

  let released = false;
  return {
    lockFile,
    owner,
    release: async () => {
      if (released) return;
      released = true;
      try {
        const now = await fs.lstat(lockFile);
        const text = await fs.readFile(lockFile, 'utf8');
        if (now.ino === mine.ino && now.dev === mine.dev && text === content) await fs.unlink(lockFile);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      } finally {
        heldHere.delete(key);
        interlock?.close();
      }
    },
  };
}
