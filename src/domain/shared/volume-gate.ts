import type { Tx } from '../../db/client.js';
import { Prisma } from '../../generated/prisma/client.js';

// The gate between a volume's entry writers and what must exclude them (taking a path lock, deleting
// or restoring the volume, changing its settings or mounts, a reconcile, a purge). Writers hold it
// shared, the others exclusively, for the rest of their transaction. It is an advisory lock rather
// than a lock on the volume row because Postgres queues new shared holders of an advisory lock
// behind a waiting exclusive one; row share locks are granted past a waiting FOR UPDATE, so a steady
// stream of writers could starve it. Writers of one volume never wait for each other here.

/** Keeps the gate's keys apart from any other advisory lock user of the database. */
const GATE_SEED = 7_300_001;

/** Waits until no writer of the volume is in flight, and keeps new ones out until the transaction ends. */
export async function excludeVolumeWriters(tx: Tx, volumeId: string): Promise<void> {
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${volumeId}, ${GATE_SEED}))`;
}

/** A select-list item that enters the gate as one of the volume's writers (`id` is the volumes row's). */
export const enterAsVolumeWriter = Prisma.sql`pg_advisory_xact_lock_shared(hashtextextended(id, ${GATE_SEED}))::text`;
