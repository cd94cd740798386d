import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startGateway, type TestGateway } from './app.js';
import { type ChildGateway, spawnGateway, stopChild } from './child.js';
import { type PgliteServer, startPgliteServer } from './pglite-server.js';

export interface Replicas {
  /** The one database both replicas use. */
  db: PgliteServer;
  /** The replica in this process; it boots first and applies the migrations. */
  a: TestGateway;
  /** The replica in a child process running the real entry point. */
  b: ChildGateway;
  /** Both base URLs, A's first. */
  urls: [string, string];
  /** Stops B, A and the database; each step runs even if an earlier one fails. */
  stop(): Promise<void>;
}

/**
 * Two gateway replicas on one Postgres (a PGlite behind pglite-socket, reached through
 * @prisma/adapter-pg): one in this process, the other a child process running the real entry point
 * src/main.ts, so replica tests also cover process start, signals and shutdown (two gateways in one
 * process work too: test/two-gateways.test.ts).
 */
export async function startReplicas(
  opts: {
    /** Environment of both replicas (DATABASE_URL is added). */
    env?: Record<string, string>;
    /** Environment of the child replica only. */
    childEnv?: Record<string, string>;
    /** The socket server's connection cap: both pools together must stay under it. */
    maxConnections?: number;
    /** B gets a DATA_DIR of its own (by default it shares A's, and so its local blob store). */
    ownDataDir?: boolean;
  } = {},
): Promise<Replicas> {
  let db: PgliteServer | undefined;
  let a: TestGateway | undefined;
  let b: ChildGateway | undefined;
  let childDataDir: string | undefined;
  const stop = async () => {
    if (b) await stopChild(b.child);
    await a?.stop().catch((err) => console.error('gateway stop failed', err));
    await db?.stop();
    if (childDataDir) await fs.rm(childDataDir, { recursive: true, force: true });
  };
  try {
    db = await startPgliteServer(opts.maxConnections);
    const env = { ...opts.env, DATABASE_URL: db.url };
    a = await startGateway(env);
    if (opts.ownDataDir) childDataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vg-replica-'));
    b = await spawnGateway({ ...env, DATA_DIR: childDataDir ?? a.dataDir, ...opts.childEnv });
    return { db, a, b, urls: [a.url, b.url], stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
