import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';
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
 * queue above: the "server mode" database of the tests, reached through @prisma/adapter-pg.
 */
export async function startPgliteServer(maxConnections = 10): Promise<PgliteServer> {
  const pg = await PGlite.create({ extensions: { vector } });
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
