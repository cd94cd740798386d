/**
 * The embedded database's thread (started by database-thread.ts): opens PGlite in DATA_DIR/pgdata,
 * applies pending migrations, and serves it over the Postgres wire protocol on a private Unix
 * socket, so the gateway's event loop never runs the database's own work (PGlite executes every
 * statement synchronously on the thread that owns it).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import type { ThreadMessage, ThreadOptions } from './database-thread.js';
import { DatabaseDamagedError, openEmbeddedForGateway } from './embedded.js';
import { applyMigrations } from './migrate.js';
import { servePglite } from './session-queue.js';

const opts = workerData as ThreadOptions;
const port = parentPort!;
const send = (msg: ThreadMessage) => port.postMessage(msg);
const log = (msg: string) => send({ type: 'log', msg });

let pglite: PGlite | undefined;
let server: PGLiteSocketServer | undefined;

async function start(): Promise<void> {
  pglite = await openEmbeddedForGateway(opts.dataDir, {
    migrate: opts.migrate,
    log,
    sharedBuffersMb: opts.sharedBuffersMb,
  });
  if (opts.migrate) {
    const { applied } = await applyMigrations(new PrismaPGlite(pglite), { log });
    if (applied.length > 0) log(`applied migrations: ${applied.join(', ')}`);
  }
  server = await servePglite(pglite, { path: opts.socketPath }, opts.maxConnections);
  send({ type: 'ready' });
}

/** A clean stop: no new statements, then PGlite closed (its files consistent), then the thread ends. */
async function stop(): Promise<void> {
  await server?.stop().catch(() => {});
  await pglite?.close();
  send({ type: 'closed' });
  port.close();
}

port.on('message', (msg: { type: 'close' }) => {
  if (msg.type === 'close') void stop().catch((err) => fail(err));
});

const causeOf = (cause: unknown) =>
  cause instanceof Error ? { causeName: cause.name, cause: cause.message } : { causeName: 'Error', cause: String(cause) };

function fail(err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  send({
    type: 'failed',
    name: e.name,
    message: e.message,
    stack: e.stack ?? '',
    ...(e instanceof DatabaseDamagedError ? { damaged: { pgdataDir: e.pgdataDir, dataDir: e.dataDir, ...causeOf(e.cause) } } : {}),
  });
  port.close();
}

start().catch(fail);
