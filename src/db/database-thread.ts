/**
 * Embedded mode's database off the event loop: PGlite runs in a worker thread
 * (database-thread-worker.ts) behind a private Unix socket, and the gateway reaches it through
 * @prisma/adapter-pg like any Postgres server. HTTP parsing, GraphQL execution and JSON then overlap
 * with the database's work instead of waiting for it on one thread. PGlite still runs one session:
 * the socket's session queue gives it to one connection at a time (a whole transaction, or one
 * statement batch outside one).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { DatabaseDamagedError } from './embedded.js';

export interface ThreadOptions {
  dataDir: string;
  socketPath: string;
  migrate: boolean;
  maxConnections: number;
  /** PGlite's shared_buffers in MB (default PGlite's own). */
  sharedBuffersMb?: number | undefined;
}

export type ThreadMessage =
  | { type: 'log'; msg: string }
  | { type: 'ready' }
  | { type: 'closed' }
  | {
      type: 'failed';
      name: string;
      message: string;
      stack: string;
      damaged?: { pgdataDir: string; dataDir: string; causeName: string; cause: string };
    };

export interface DatabaseThread {
  /** Connection settings for node-postgres: the socket's folder as host. */
  pg: { host: string; port: number; user: string; database: string };
  /** Stops the socket, closes PGlite cleanly and ends the thread. */
  close(): Promise<void>;
}

/** Port number in the socket's file name (`.s.PGSQL.<port>`, as libpq and node-postgres expect). */
const SOCKET_PORT = 5432;

/** The socket folders' names in the temp dir: `vg-db-` and mkdtemp's random suffix. */
const SOCKET_DIR_PREFIX = 'vg-db-';

/**
 * The file in DATA_DIR naming the socket folder of the gateway that owns it. A clean stop removes
 * both; a gateway killed outright (SIGKILL, OOM) leaves both, and the next owner of DATA_DIR (the
 * lock says the last one is dead) removes the folder it names.
 */
export const SOCKET_DIR_RECORD = '.db-socket-dir';

/**
 * Removes the socket folder a previous owner of `dataDir` left, if its record names one this code
 * makes (`vg-db-…` directly in the temp dir, so a stale or edited record never removes anything
 * else), then the record. The caller holds the DATA_DIR lock.
 */
async function removeLeftSocketDir(dataDir: string, log?: (msg: string) => void): Promise<void> {
  const record = path.join(dataDir, SOCKET_DIR_RECORD);
  let left: string;
  try {
    left = (await fs.readFile(record, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (path.dirname(left) === os.tmpdir() && path.basename(left).startsWith(SOCKET_DIR_PREFIX)) {
    await fs.rm(left, { recursive: true, force: true });
    log?.(`removed the database socket folder ${left}, left by a gateway that did not stop cleanly`);
  }
  await fs.rm(record, { force: true });
}

// Run from TypeScript sources (tsx, vitest), the worker needs the same loader; built output is plain JS.
const workerUrl = new URL(`./database-thread-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/**
 * Starts the database thread on `dataDir` (the caller holds the DATA_DIR lock) and resolves once it
 * accepts connections. `onLost` is called if the thread dies later without being asked to.
 * @throws DatabaseDamagedError when the existing database cannot be opened; other start errors as they came
 */
export async function startDatabaseThread(opts: {
  dataDir: string;
  migrate: boolean;
  maxConnections: number;
  sharedBuffersMb?: number | undefined;
  log?: (msg: string) => void;
  onLost: (err: Error) => void;
}): Promise<DatabaseThread> {
  await removeLeftSocketDir(opts.dataDir, opts.log);
  // A private folder (0700) for the socket: only this user can connect.
  const socketDir = await fs.mkdtemp(path.join(os.tmpdir(), SOCKET_DIR_PREFIX));
  const record = path.join(opts.dataDir, SOCKET_DIR_RECORD);
  await fs.writeFile(record, socketDir);
  const options: ThreadOptions = {
    dataDir: opts.dataDir,
    socketPath: path.join(socketDir, `.s.PGSQL.${SOCKET_PORT}`),
    migrate: opts.migrate,
    maxConnections: opts.maxConnections,
    sharedBuffersMb: opts.sharedBuffersMb,
  };
  // From sources, the thread registers tsx first: `--import tsx` in a worker's execArgv does not
  // take effect (Node 20, tsx 4), so a .ts entry would not load.
  const worker = workerUrl.pathname.endsWith('.ts')
    ? new Worker(
        `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); return import(${JSON.stringify(workerUrl.href)}); })`,
        { eval: true, workerData: options },
      )
    : new Worker(workerUrl, { workerData: options });
  let state: 'starting' | 'ready' | 'closing' | 'closed' = 'starting';
  const removeSocketDir = async () => {
    await fs.rm(socketDir, { recursive: true, force: true }).catch(() => {});
    await fs.rm(record, { force: true }).catch(() => {});
  };

  const ready = new Promise<void>((resolve, reject) => {
    worker.on('message', (msg: ThreadMessage) => {
      if (msg.type === 'log') opts.log?.(msg.msg);
      else if (msg.type === 'ready') {
        state = 'ready';
        resolve();
      } else if (msg.type === 'failed') {
        const err = msg.damaged
          ? new DatabaseDamagedError(
              msg.damaged.pgdataDir,
              msg.damaged.dataDir,
              Object.assign(new Error(msg.damaged.cause), { name: msg.damaged.causeName }),
            )
          : Object.assign(new Error(msg.message), { name: msg.name, stack: msg.stack });
        if (state === 'starting') reject(err);
        else if (state === 'ready') opts.onLost(err);
        else opts.log?.(`the embedded database thread failed while closing: ${err.message}`);
      }
    });
    worker.on('error', (err) => {
      if (state === 'starting') reject(err);
      else if (state === 'ready') opts.onLost(err);
    });
    worker.on('exit', (code) => {
      void removeSocketDir();
      const err = new Error(`the embedded database thread exited (code ${code})`);
      if (state === 'starting') reject(err);
      else if (state === 'ready') opts.onLost(err);
      state = 'closed';
    });
  });
  try {
    await ready;
  } catch (err) {
    await worker.terminate();
    await removeSocketDir();
    throw err;
  }
  return {
    pg: { host: socketDir, port: SOCKET_PORT, user: 'postgres', database: 'postgres' },
    close: async () => {
      if (state !== 'ready') return;
      state = 'closing';
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'close' });
      await exited;
      await removeSocketDir();
    },
  };
}
