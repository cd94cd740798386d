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
export async function startPgliteServer(maxConnections = 10, extensions: Extensions = PGLITE_EXTENSIONS): Promise<PgliteServer> {
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
