import { useEffect, useState } from 'preact/hooks';
import { fieldError, request, subscribe } from '../api.ts';
import type { Session } from '../app.tsx';
import { graphql } from '../graphql.ts';
import { Empty, ErrorMessage, FieldNote, formatDate, intInput, timeUntil, useLoad, useNow } from '../ui.tsx';

const LocksQuery = graphql(`
  query Locks($id: ID!) {
    volume(id: $id) { id locks { id partition lockType holderAppId holderExecutionId fencingToken acquiredAt expiresAt } }
  }
`);

const LockEvents = graphql(`
  subscription LockEvents($volumeId: ID!) {
    lockEvents(volumeId: $volumeId) { kind lockId partition }
  }
`);

const AcquireLock = graphql(`
  mutation AcquireLock($volumeId: ID!, $input: AcquireLockInput!) {
    acquireLock(volumeId: $volumeId, input: $input) { id fencingToken }
  }
`);

const ReleaseLock = graphql(`
  mutation ReleaseLock($volumeId: ID!, $lockId: ID!) {
    releaseLock(volumeId: $volumeId, lockId: $lockId)
  }
`);

type LockType = 'exclusive' | 'shared';

export function LocksTab({ volumeId, session }: { volumeId: string; session: Session }) {
  const loaded = useLoad(() => request(LocksQuery, { id: volumeId }), [volumeId]);
  const now = useNow();
  const [partition, setPartition] = useState('');
  const [appId, setAppId] = useState(session.viewer.appId ?? 'console');
  const [lockType, setLockType] = useState<LockType>('exclusive');
  const [ttl, setTtl] = useState('60');
  const [error, setError] = useState<unknown>(null);
  const reload = loaded.reload;

  // Acquired, renewed, released and expired locks, by anyone: the table follows.
  useEffect(() => subscribe(LockEvents, { volumeId }, { next: () => reload() }), [volumeId, reload]);

  const locks = loaded.data?.volume?.locks;
  const errors = {
    partition: fieldError(error, 'partition'),
    appId: fieldError(error, 'appId'),
    ttl: fieldError(error, 'ttlSeconds'),
  };
  return (
    <div>
      <h2>Locks</h2>
      <p class="muted">Live leases on partitions of this volume. A path partition (starting with /) guards writes under it.</p>
      <ErrorMessage error={loaded.error} title="Could not load the locks" />
      <ErrorMessage error={error} />
      {locks && locks.length === 0 && <Empty>No live locks.</Empty>}
      {locks && locks.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Partition</th>
              <th scope="col">Type</th>
              <th scope="col">Holder</th>
              <th scope="col" class="num">
                Fencing token
              </th>
              <th scope="col">Acquired</th>
              <th scope="col">Expires in</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {locks.map((l) => (
              <tr key={l.id}>
                <td>
                  <code>{l.partition}</code>
                </td>
                <td>{l.lockType}</td>
                <td>
                  {l.holderAppId}
                  {l.holderExecutionId && <span class="muted small"> / {l.holderExecutionId}</span>}
                </td>
                <td class="num">{l.fencingToken}</td>
                <td>{formatDate(l.acquiredAt)}</td>
                <td>{timeUntil(l.expiresAt, now)}</td>
                <td>
                  <button
                    type="button"
                    class="danger"
                    aria-label={`Release the lock on ${l.partition}`}
                    onClick={async () => {
                      setError(null);
                      try {
                        await request(ReleaseLock, { volumeId, lockId: l.id });
                        reload();
                      } catch (err) {
                        setError(err);
                      }
                    }}
                  >
                    Release
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form
        class="inline-form"
        aria-label="Acquire a lock"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            await request(AcquireLock, {
              volumeId,
              input: { partition, appId, lockType, ...(intInput(ttl) !== undefined ? { ttlSeconds: intInput(ttl) } : {}) },
            });
            setPartition('');
            reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <h3>New lock</h3>
        <label>
          Partition
          <input
            name="lock-partition"
            required
            placeholder="/reports/ or a name"
            value={partition}
            aria-invalid={errors.partition ? true : undefined}
            aria-describedby={errors.partition ? 'lock-partition-error' : undefined}
            onInput={(e) => setPartition(e.currentTarget.value)}
          />
          <FieldNote id="lock-partition-error" message={errors.partition} />
        </label>
        <label>
          Holder app id
          <input
            name="lock-app"
            required
            value={appId}
            aria-invalid={errors.appId ? true : undefined}
            aria-describedby={errors.appId ? 'lock-app-error' : undefined}
            onInput={(e) => setAppId(e.currentTarget.value)}
          />
          <FieldNote id="lock-app-error" message={errors.appId} />
        </label>
        <label>
          Type
          <select name="lock-type" value={lockType} onChange={(e) => setLockType(e.currentTarget.value as LockType)}>
            <option value="exclusive">exclusive</option>
            <option value="shared">shared</option>
          </select>
        </label>
        <label>
          TTL (seconds)
          <input
            name="lock-ttl"
            inputMode="numeric"
            value={ttl}
            aria-invalid={errors.ttl ? true : undefined}
            aria-describedby={errors.ttl ? 'lock-ttl-error' : undefined}
            onInput={(e) => setTtl(e.currentTarget.value)}
          />
          <FieldNote id="lock-ttl-error" message={errors.ttl} />
        </label>
        <button type="submit">Acquire lock</button>
      </form>
    </div>
  );
}
