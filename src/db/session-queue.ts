import type { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

interface QueuedMessage {
  handlerId: number;
  message: Uint8Array;
  resolve: (bytes: number) => void;
  reject: (err: unknown) => void;
  onData: (data: Uint8Array) => void;
}

/**
 * A drop-in for pglite-socket's query queue (0.2.17), which hands PGlite's single session to
 * whichever connection's next *message* is queued, pinning a connection only inside an SQL
 * transaction. Concurrent extended-protocol batches (Parse/Bind/Execute/Sync) from two connections
 * then interleave and clobber each other's unnamed statement and portal ("portal \"\" does not
 * exist", wrong rows), and one failed message wedges its queue for good (electric-sql/pglite#1046).
 * With two gateway pools under contention that happens on every run. This queue pins the session
 * to a connection from its first message until a batch ends (Sync, simple Query, startup,
 * Terminate) outside a transaction, and keeps going after a failure. Used by the embedded
 * database thread (pglite-thread.ts) and by the tests' "server mode" database.
 */
export class SessionQueue {
  private queue: QueuedMessage[] = [];
  private owner: number | null = null;
  private processing = false;
  constructor(private readonly db: PGlite) {}

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ handlerId, message, resolve, reject, onData });
      void this.process();
    });
  }

  private async process(): Promise<void> {
    if (this.processing) return;
    this.processing = true;
    try {
      for (;;) {
        const next = this.owner === null ? (this.queue.length > 0 ? 0 : -1) : this.queue.findIndex((q) => q.handlerId === this.owner);
        if (next === -1) return;
        const [item] = this.queue.splice(next, 1);
        if (!item) return;
        this.owner = item.handlerId;
        let bytes = 0;
        try {
          await this.db.runExclusive(() =>
            this.db.execProtocolRawStream(item.message, {
              onRawData: (data) => {
                bytes += data.length;
                item.onData(data);
              },
            }),
          );
          item.resolve(bytes);
        } catch (err) {
          item.reject(err);
        }
        // Frontend message types: S(ync), Q(uery), X (Terminate); a startup message has no type byte (0).
        const type = item.message[0];
        const endsBatch = type === 0x53 || type === 0x51 || type === 0x58 || type === 0;
        if (endsBatch && !this.db.isInTransaction()) this.owner = null;
      }
    } finally {
      this.processing = false;
    }
  }

  getQueueLength(): number {
    return this.queue.length;
  }

  clearQueueForHandler(handlerId: number): void {
    this.queue = this.queue.filter((q) => {
      if (q.handlerId !== handlerId) return true;
      q.reject(new Error('Handler disconnected'));
      return false;
    });
  }

  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.owner !== handlerId) return;
    if (this.db.isInTransaction()) await this.db.exec('ROLLBACK');
    this.owner = null;
    void this.process();
  }
}

/**
 * Serves `db` over the Postgres wire protocol (pglite-socket) on a TCP port or a Unix socket, with
 * the session queue above in place of the package's own. Returns the started server.
 * @throws when pglite-socket no longer has the queue this replaces (its version must stay pinned)
 */
export async function servePglite(
  db: PGlite,
  where: { path: string } | { host: string; port: number },
  maxConnections: number,
): Promise<PGLiteSocketServer> {
  const server = new PGLiteSocketServer({ db, maxConnections, ...where });
  // Each connection's handler takes the server's queue when it connects: replace it before any does.
  const internals = server as unknown as { queryQueue?: unknown };
  if (!internals.queryQueue) throw new Error('pglite-socket changed: it has no queryQueue to replace (keep it pinned at 0.2.17)');
  internals.queryQueue = new SessionQueue(db);
  await server.start();
  return server;
}
