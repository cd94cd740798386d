import { Prisma } from '../../generated/prisma/client.js';

// The one definition of a live entry: it has no expiry, or its expiry is still ahead. Expired rows
// stay in the table until the sweeper removes them, so every read of entries goes through this.

/** Live entries of a volume, as a Prisma filter (at `now`). */
export function liveEntries(volumeId: string, now = new Date()): Prisma.EntryWhereInput {
  return { volumeId, OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] };
}

/** The same rule in SQL, for the entries table under `alias` (`e` → `e.expires_at`; empty for none). */
export function liveEntrySql(alias: string, now = new Date()): Prisma.Sql {
  const column = Prisma.raw(alias ? `${alias}.expires_at` : 'expires_at');
  return Prisma.sql`(${column} IS NULL OR ${column} > ${now})`;
}
