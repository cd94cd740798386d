import { type Extensions, PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { PGLITE_EXTENSIONS } from '../../src/db/pglite-extensions.js';
import { servePglite } from '../../src/db/session-queue.js';

export interface PgliteServer {
  pg: PGlite;
  socket: PGLiteSocketServer;
  /** postgres:// URL for DATABASE_URL. */
  url: string;
  stop(): Promise<void>;
}

/**
 * A PGlite with pgvector served over the Postgres wire protocol (pglite-socket), with the session
 * queue (src/db/session-queue.ts): the "server mode" database of the tests, reached through
 * @prisma/adapter-pg. `extensions` stands in for a server that lacks some (pg_textsearch, say).
 */
/**
 * Connections for a gateway with the default pool (DATABASE_POOL_SIZE 10), with the headroom the
 * embedded database thread gives its own (src/db/database.ts). pglite-socket refuses a connection
 * past its cap by writing text and closing, which the client reports as "Connection terminated
 * unexpectedly", and it counts a connection until it has handled its close (a turn of the event
 * loop this PGlite shares with the gateway). At exactly 10, one of six concurrent compiled reads
 * failed so in one CI run (2026-12-02, a slow machine); a local burst test did not reproduce it, so
 * the headroom is a guard, not a proven cause.
 */
export const DEFAULT_POOL_CONNECTIONS = 14;

export async function startPgliteServer(
  maxConnections = DEFAULT_POOL_CONNECTIONS,
  extensions: Extensions = PGLITE_EXTENSIONS,
): Promise<PgliteServer> {
  const pg = await PGlite.create({ extensions });
  const socket = await servePglite(pg, { host: '127.0.0.1', port: 0 }, maxConnections);
  const url = `postgres://postgres@127.0.0.1:${socket.getServerConn().split(':').pop()}/postgres`;
  return {
    pg,
    socket,
    url,
    stop: async () => {
      await socket.stop().catch(() => {});
      await pg.close().catch(() => {});
    },
  };
}
