/**
 * Locks: leases with fencing tokens on a volume's partitions (acquire, renew, release, list) and the
 * write guard that enforces them on entry writes. One file (~300 lines) because lifecycle and guard
 * share one table's invariants and their private helpers; request shapes live in partitions.ts.
 */
import type { Db, Tx } from '../../db/client.js';
import { type Lock, Prisma, type Volume } from '../../generated/prisma/client.js';
import { authorizeVolume } from '../access/authorize.js';
import { pathAccess, requireWritable } from '../access/entry-access.js';
import { isAppKey, type Principal, requireScope } from '../access/principal.js';
import { contentsListable } from '../access/visibility.js';
import { ConflictError, ForbiddenError, LockedError, NotFoundError, ValidationError } from '../shared/errors.js';
import type { LockEvent } from '../shared/events.js';
import { isId } from '../shared/fields.js';
import type { Loc, VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { enterAsVolumeWriter, excludeVolumeWriters } from '../shared/volume-gate.js';
import {
  AcquireLockInput,
  asPartitionPrefix,
  isPathPartition,
  normalisePartition,
  partitionMatches,
  pathOfPartition,
  RenewLockInput,
} from './partitions.js';

function publish(rt: Runtime, kind: LockEvent['kind'], lock: Lock): void {
  rt.events.publish('lockEvents', lock.volumeId, {
    kind,
    volumeId: lock.volumeId,
    lockId: lock.id,
    partition: lock.partition,
    lockType: lock.lockType,
    holderAppId: lock.holderAppId,
    fencingToken: Number(lock.fencingToken),
    expiresAt: lock.expiresAt,
  });
}

/** App keys act for their own app only: a lock is held by the app of the key that took it. */
function requireOwnApp(p: Principal, appId: string, loc: Loc): void {
  if (isAppKey(p) && p.appId !== appId) {
    throw new ForbiddenError('locks:write', {
      reason: `an app key can take locks only for its own app (${p.appId})`,
      field: loc.join('.'),
    });
  }
}

/**
 * The one rule for taking and renewing a lock, whichever transport asks (REST and GraphQL both come
 * through acquireLock and renewLock). Every principal needs `locks:write` (openLockVolume checks it);
 * org keys and the platform key are governed by scopes alone. An app key also needs write access
 * where the lock reaches, since an exclusive path lock stops everyone else writing there:
 * - a volume it reaches only because it is shared takes no locks from it (403 `locks:write`);
 * - a path partition needs a `write` or `admin` mount matching the path itself (`/reports/` →
 *   `/reports`): 403 `path:write` without one, 404 when the path is not even readable for it, as
 *   entry writes answer (requireWritable);
 * - a named partition needs at least one `write` or `admin` mount on the volume (403 `volume:write`).
 * Releasing is not subject to it: a holder can always let go of its lock.
 * @throws ForbiddenError, NotFoundError
 */
export async function requireLockAccess(
  rt: Runtime,
  p: Principal,
  volumeId: string,
  partition: string,
  db: Db | Tx = rt.db,
): Promise<void> {
  if (!isAppKey(p)) return;
  const access = await pathAccess(rt, p, volumeId, db);
  if (access.viaShareOnly) {
    throw new ForbiddenError('locks:write', { reason: 'a shared volume is read-only for apps without a mount on it' });
  }
  if (isPathPartition(partition)) {
    requireWritable(access, pathOfPartition(partition));
  } else if (!access.writesSomewhere) {
    throw new ForbiddenError('volume:write', {
      partition,
      reason: `a named partition needs a write or admin mount on the volume for app ${p.appId}`,
    });
  }
}

/** The volume a lock operation addresses, visible to the principal, which must hold locks:write. */
async function openLockVolume(rt: Runtime, p: Principal, route: VolumeRoute): Promise<Volume> {
  return authorizeVolume(rt, p, route, { scope: 'locks:write' });
}

/**
 * Who may see a volume's locks (list them, watch their events): whoever can read the volume.
 * @throws NotFoundError (not visible, another org), ForbiddenError (volumes:read)
 */
export async function authorizeLockReading(rt: Runtime, p: Principal, route: VolumeRoute): Promise<void> {
  await authorizeVolume(rt, p, route, { scope: 'volumes:read' });
}

/** Live locks of a volume (expired and released ones never block and are never listed). */
export async function listLocks(rt: Runtime, p: Principal, route: VolumeRoute): Promise<Lock[]> {
  await authorizeLockReading(rt, p, route);
  return rt.db.lock.findMany({
    where: { volumeId: route.volumeId, releasedAt: null, expiresAt: { gt: new Date() } },
    orderBy: [{ partition: 'asc' }, { acquiredAt: 'asc' }],
  });
}

/** The locks a volume lists: live ones (not released, not expired), by partition, then oldest first. */
export function liveLocksQuery(now = new Date()) {
  return {
    where: { releasedAt: null, expiresAt: { gt: now } },
    orderBy: [{ partition: 'asc' as const }, { acquiredAt: 'asc' as const }],
  };
}

/** `liveLocksQuery` as SQL over a table alias: its condition and its order (compiled reads). */
export function liveLocksSql(alias: string, now = new Date()): { where: Prisma.Sql; orderBy: Prisma.Sql } {
  const a = Prisma.raw(alias);
  return {
    where: Prisma.sql`${a}.released_at IS NULL AND ${a}.expires_at > ${now}`,
    orderBy: Prisma.sql`${a}.partition, ${a}.acquired_at`,
  };
}

/**
 * The live locks of a volume, loaded with its row (`liveLocksQuery`), as the principal may see them:
 * needs `volumes:read`; a deleted volume (or one of another organisation) lists none.
 * @throws ForbiddenError, NotFoundError
 */
export function locksOfLoadedVolume<L>(p: Principal, volume: Pick<Volume, 'id' | 'orgId' | 'deletedAt'>, locks: L[]): L[] {
  requireScope(p, 'volumes:read');
  if (!contentsListable(p, volume)) throw new NotFoundError('volume', volume.id);
  return locks;
}

/**
 * Takes a lease on a partition. All acquirers of one partition serialise on its fencing-counter row
 * (an upsert holds the row lock until commit), so of N concurrent exclusive acquirers, on any number
 * of replicas, exactly one wins; path partitions also take the volume row, so overlapping prefixes
 * (`/a/` and `/a/b/`) see each other. Every acquisition gets the next fencing token of its partition.
 * @throws ValidationError, NotFoundError, ForbiddenError, ConflictError (naming the holder and expiry)
 */
export async function acquireLock(rt: Runtime, p: Principal, route: VolumeRoute, raw: unknown, loc: Loc = ['body']): Promise<Lock> {
  const volume = await openLockVolume(rt, p, route);
  const input = parseInput(AcquireLockInput, raw, loc);
  requireOwnApp(p, input.app_id, [...loc, 'app_id']);
  const partition = normalisePartition(input.partition, [...loc, 'partition']);
  // Checked before anything is written: a refused acquirer leaves no lock row and no fencing token.
  await requireLockAccess(rt, p, volume.id, partition);
  await rt.hooks.afterLockAccessCheck?.(volume.id, partition);

  const lock = await rt.db.$transaction(
    async (tx) => {
      if (isPathPartition(partition)) {
        await excludeVolumeWriters(tx, route.volumeId);
        await tx.$queryRaw`SELECT id FROM volumes WHERE id = ${route.volumeId} FOR UPDATE`;
      } else if (isAppKey(p)) {
        await tx.$queryRaw`SELECT ${enterAsVolumeWriter} FROM volumes WHERE id = ${route.volumeId}`;
      }
      // Again inside the volume's gate, which removing a mount takes exclusively: a mount removed
      // since the check above is seen here, and one removed later finds this lock held.
      await requireLockAccess(rt, p, volume.id, partition, tx);
      const [counter] = await tx.$queryRaw<{ last_token: bigint }[]>`
        INSERT INTO fencing_counters (volume_id, partition, last_token) VALUES (${route.volumeId}, ${partition}, 1)
        ON CONFLICT (volume_id, partition) DO UPDATE SET last_token = fencing_counters.last_token + 1
        RETURNING last_token`;
      const conflicts = await liveConflicts(tx, route.volumeId, partition, input.lock_type);
      const first = conflicts[0];
      if (first) {
        throw new ConflictError(
          `Partition ${first.partition} is locked (${first.lockType}) by ${first.holderAppId} until ${first.expiresAt.toISOString()}`,
          {
            reason: 'locked',
            partition: first.partition,
            lock_type: first.lockType,
            holder_app_id: first.holderAppId,
            holder_execution_id: first.holderExecutionId,
            expires_at: first.expiresAt.toISOString(),
          },
        );
      }
      return tx.lock.create({
        data: {
          volumeId: route.volumeId,
          partition,
          lockType: input.lock_type,
          holderAppId: input.app_id,
          holderExecutionId: input.execution_id ?? null,
          fencingToken: counter?.last_token ?? 1n,
          // One clock (the gateway's) for acquired_at, expires_at and every expiry check.
          acquiredAt: new Date(),
          expiresAt: new Date(Date.now() + input.ttl_seconds * 1000),
        },
      });
    },
    { timeout: 20_000, maxWait: 20_000 },
  );
  publish(rt, 'acquired', lock);
  return lock;
}

/**
 * Live locks that a new lock of `type` on `partition` would conflict with: exclusive conflicts with
 * anything, shared only with exclusive. For path partitions, any live lock on an overlapping prefix.
 */
async function liveConflicts(tx: Tx, volumeId: string, partition: string, type: 'exclusive' | 'shared'): Promise<Lock[]> {
  const now = new Date();
  const candidates = await tx.lock.findMany({
    where: {
      volumeId,
      releasedAt: null,
      expiresAt: { gt: now },
      ...(type === 'shared' ? { lockType: 'exclusive' } : {}),
      ...(isPathPartition(partition) ? { partition: { startsWith: '/' } } : { partition }),
    },
    orderBy: { expiresAt: 'desc' },
  });
  if (!isPathPartition(partition)) return candidates;
  return candidates.filter((l) => l.partition.startsWith(partition) || partition.startsWith(l.partition));
}

async function findHeldLock(rt: Runtime, p: Principal, route: VolumeRoute, lockId: string, loc: Loc): Promise<Lock> {
  const lock = isId(lockId) ? await rt.db.lock.findFirst({ where: { id: lockId, volumeId: route.volumeId, releasedAt: null } }) : null;
  if (!lock) throw new NotFoundError('lock', lockId);
  if (isAppKey(p) && p.appId !== lock.holderAppId) {
    throw new ForbiddenError('locks:write', { reason: `lock ${lockId} is held by ${lock.holderAppId}`, field: loc.join('.') });
  }
  return lock;
}

/**
 * Extends a live lease by `ttl_seconds` from now, keeping its id and fencing token. Renewing is
 * taking the lock for longer, so the acquisition rule (requireLockAccess) applies again: an app whose
 * write mount was withdrawn meanwhile cannot keep the lock alive (it can still release it).
 * @throws NotFoundError (unknown or released), ForbiddenError (another app's, or no write access
 * any more), ConflictError (already expired)
 */
export async function renewLock(rt: Runtime, p: Principal, route: VolumeRoute, raw: unknown, loc: Loc = ['body']): Promise<Lock> {
  const volume = await openLockVolume(rt, p, route);
  const input = parseInput(RenewLockInput, raw, loc);
  const lock = await findHeldLock(rt, p, route, input.lock_id, [...loc, 'lock_id']);
  // Conditional update: a lease that ran out cannot be revived, even by a renewal racing the clock.
  const extend = (db: Db | Tx) =>
    db.lock.updateMany({
      where: { id: lock.id, releasedAt: null, expiresAt: { gt: new Date() } },
      data: { expiresAt: new Date(Date.now() + input.ttl_seconds * 1000) },
    });
  // An app's access is checked inside the volume's gate, which removing a mount takes exclusively (as acquireLock does).
  const { count } = isAppKey(p)
    ? await rt.db.$transaction(async (tx) => {
        await tx.$queryRaw`SELECT ${enterAsVolumeWriter} FROM volumes WHERE id = ${route.volumeId}`;
        await requireLockAccess(rt, p, volume.id, lock.partition, tx);
        return extend(tx);
      })
    : await extend(rt.db);
  if (count === 0) {
    throw new ConflictError(`Lock ${lock.id} expired at ${lock.expiresAt.toISOString()}; acquire a new one`, {
      reason: 'expired',
      lock_id: lock.id,
      expired_at: lock.expiresAt.toISOString(),
    });
  }
  const renewed = await rt.db.lock.findUniqueOrThrow({ where: { id: lock.id } });
  publish(rt, 'renewed', renewed);
  return renewed;
}

/**
 * Releases a lock by id (its holder, or an org/platform key with locks:write). Releasing an expired
 * lock succeeds too: the holder is done either way.
 * @throws NotFoundError (unknown, released, or not on this partition), ForbiddenError (another app's)
 */
export async function releaseLock(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  lockId: string,
  partition: string | undefined,
  loc: Loc = ['query', 'lock_id'],
): Promise<Lock> {
  await openLockVolume(rt, p, route);
  if (!lockId) throw ValidationError.field(loc, 'Field required', null, 'missing');
  const lock = await findHeldLock(rt, p, route, lockId, loc);
  // In a URL the partition follows `/locks/`, so a path partition may arrive without its leading slash.
  if (partition !== undefined && !partitionMatches(lock.partition, partition)) throw new NotFoundError('lock', lockId);
  const { count } = await rt.db.lock.updateMany({ where: { id: lock.id, releasedAt: null }, data: { releasedAt: new Date() } });
  if (count === 0) throw new NotFoundError('lock', lockId);
  publish(rt, 'released', lock);
  return lock;
}

/** What a writer may present with a write: the lock it holds and/or the fencing token it was issued. */
export interface WriteGuard {
  lockId?: string | undefined;
  fencing?: { partition: string; token: number } | undefined;
}

/**
 * Checks a write to `path` against locks, inside the write's transaction (which holds the volume
 * row, as path-partition acquirers do): a live exclusive lock on a path partition covering `path`
 * (the partition is `path` itself or one of its ancestors: `/notes/a.md/` and `/notes/` both cover
 * `/notes/a.md`) refuses everyone but the holder presenting its lock id (LOCKED); a fencing token
 * older than the newest issued for its partition is refused (a paused holder whose lease ran out
 * must not clobber its successor's work).
 * @throws LockedError, ConflictError (stale fencing token)
 */
export async function checkWriteGuard(tx: Tx, volumeId: string, path: string, guard: WriteGuard = {}): Promise<void> {
  (await writeGuardOf(tx, volumeId, guard))(path);
}

/**
 * checkWriteGuard for any number of paths of a volume (a batch), read once: the fencing token is
 * checked and the volume's live exclusive path locks (a handful) read in one statement; the returned
 * check refuses a path as checkWriteGuard does (called in a batch's own order, the first refusal is
 * the first entry's).
 * @throws ConflictError (stale fencing token); the check throws LockedError
 */
export async function writeGuardOf(tx: Tx, volumeId: string, guard: WriteGuard = {}): Promise<(path: string) => void> {
  await checkFencing(tx, volumeId, guard);
  const locks = await tx.$queryRaw<{ id: string; partition: string; holder_app_id: string; expires_at: Date }[]>`
    SELECT id, partition, holder_app_id, expires_at FROM locks
    WHERE volume_id = ${volumeId} AND lock_type = 'exclusive' AND released_at IS NULL AND expires_at > ${new Date()}
      AND starts_with(partition, '/')`;
  return (path) => {
    const foreign = locks.find((l) => l.id !== guard.lockId && asPartitionPrefix(path).startsWith(l.partition));
    if (!foreign) return;
    throw new LockedError(`${path} is under an exclusive lock on ${foreign.partition} held by ${foreign.holder_app_id}`, {
      lock_id: foreign.id,
      partition: foreign.partition,
      holder_app_id: foreign.holder_app_id,
      expires_at: foreign.expires_at.toISOString(),
    });
  };
}

/** A fencing token older than the newest issued for its partition is refused. @throws ConflictError */
async function checkFencing(tx: Tx, volumeId: string, guard: WriteGuard): Promise<void> {
  if (guard.fencing) {
    const partition = normalisePartition(guard.fencing.partition, ['header', 'x-lock-partition']);
    const [row] = await tx.$queryRaw<{ last_token: bigint }[]>`
      SELECT last_token FROM fencing_counters WHERE volume_id = ${volumeId} AND partition = ${partition}`;
    if (!row || BigInt(guard.fencing.token) < row.last_token) {
      throw new ConflictError(`Fencing token ${guard.fencing.token} is stale for partition ${partition}`, {
        reason: 'stale_fencing_token',
        partition,
        token: guard.fencing.token,
        newest_token: row ? Number(row.last_token) : null,
      });
    }
  }
}

/**
 * Removes locks whose lease ran out (announcing them as expired) and released ones. Replicas sweep
 * concurrently: the DELETE decides which sweeper removed a lock, and only that one announces it.
 */
export async function sweepLocks(rt: Runtime): Promise<number> {
  const now = new Date();
  const expired = await rt.db.lock.findMany({ where: { releasedAt: null, expiresAt: { lte: now } }, take: 1000 });
  let removed = 0;
  if (expired.length > 0) {
    const deleted = await rt.db.$queryRaw<{ id: string }[]>`
      DELETE FROM locks WHERE id = ANY(${expired.map((l) => l.id)}::text[]) AND released_at IS NULL RETURNING id`;
    const ids = new Set(deleted.map((r) => r.id));
    for (const lock of expired) if (ids.has(lock.id)) publish(rt, 'expired', lock);
    removed += deleted.length;
  }
  const { count } = await rt.db.lock.deleteMany({ where: { releasedAt: { not: null } } });
  return removed + count;
}
