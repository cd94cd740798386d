import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sweepExpiredEntries } from '../src/domain/maintenance/maintenance.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { subscribe } from './helpers/graphql-ws.js';

let gw: TestGateway;
let v: TestVolume;
beforeAll(async () => {
  gw = await startGateway({ SWEEP_INTERVAL_MS: '3600000' });
  v = await newVolume(gw, 'acme');
});
afterAll(async () => {
  await gw?.stop();
});

const SUBSCRIPTION = `subscription($id: ID!, $prefix: String) {
  entryChanged(volumeId: $id, pathPrefix: $prefix) { volumeId entryId path change version previousPath } }`;

interface Event {
  volumeId: string;
  entryId: string;
  path: string;
  change: string;
  version: number | null;
  previousPath: string | null;
}

/** entryChanged over graphql-ws, with probe writes that tell when it is live and drain it. */
function watch(key: string, volumeId: string, prefix?: string) {
  const sub = subscribe<Event>(gw.url, key, SUBSCRIPTION, { id: volumeId, ...(prefix ? { prefix } : {}) });
  return Object.assign(sub, {
    /** Writes `probe` until its event arrives: the subscription is then live (no fixed sleep). */
    ready: (probe: string) =>
      waitFor(async () => {
        await putText(gw, v, probe);
        return sub.events.some((e) => e.path === probe);
      }),
    /** Writes `marker` and waits for its event; every event published before it has arrived. */
    drain: async (marker: string) => {
      await putText(gw, v, marker);
      await sub.until((events) => events.some((e) => e.path === marker), 10_000);
      return sub.events.filter((e) => e.path !== marker && !e.path.endsWith('/probe'));
    },
  });
}

const shape = ({ entryId: _id, volumeId: _v, ...rest }: Event) => rest;

describe('entryChanged', () => {
  it('carries ids, paths and versions only', async () => {
    const res = await gw.gql('{ __type(name: "EntryChangedEvent") { fields { name } } }');
    expect(res.body.data.__type.fields.map((f: { name: string }) => f.name).sort()).toEqual(
      ['change', 'entryId', 'path', 'previousPath', 'version', 'volumeId'].sort(),
    );
  });

  it('streams REST writes under the prefix: created, updated, moved, deleted (swept too)', async () => {
    const sub = watch(ADMIN_KEY, v.volumeId, '/notes');
    try {
      await sub.ready('/notes/probe');
      const created = (await gw.call('PUT', v.entry('/notes/x'), { content: { a: 1 } })).body.entry;
      await gw.call('PUT', v.entry('/notes/x'), { content_text: 'two' });
      await gw.call('POST', v.move, { from: '/notes/x', to: '/notes/y' });
      await gw.call('DELETE', v.entry('/notes/y'));
      await putText(gw, v, '/other/o'); // outside the prefix
      await putText(gw, v, '/notes-old/q'); // a sibling sharing the prefix's letters
      await putText(gw, v, '/notes/out');
      await gw.call('POST', v.move, { from: '/notes/out', to: '/other/out' }); // leaves the prefix
      await gw.call('POST', v.move, { from: '/other/o', to: '/notes/in' }); // enters it
      await gw.call('PUT', v.entry('/notes/ttl'), { content_text: 't', ttl_seconds: 1 });
      await waitFor(async () => (await gw.call('GET', v.entry('/notes/ttl'))).status === 404);
      expect(await sweepExpiredEntries(gw.app.runtime)).toBe(1);

      const events = await sub.drain('/notes/end');
      expect(events.map(shape)).toEqual([
        { path: '/notes/x', change: 'created', version: 1, previousPath: null },
        { path: '/notes/x', change: 'updated', version: 2, previousPath: null },
        { path: '/notes/y', change: 'moved', version: 3, previousPath: '/notes/x' },
        { path: '/notes/y', change: 'deleted', version: null, previousPath: null },
        { path: '/notes/out', change: 'created', version: 1, previousPath: null },
        { path: '/notes/out', change: 'deleted', version: null, previousPath: null },
        { path: '/notes/in', change: 'created', version: 2, previousPath: null },
        { path: '/notes/ttl', change: 'created', version: 1, previousPath: null },
        { path: '/notes/ttl', change: 'deleted', version: null, previousPath: null },
      ]);
      expect(events.slice(0, 4).every((e) => e.entryId === created.entry_id && e.volumeId === v.volumeId)).toBe(true);
      expect(sub.errors).toEqual([]);
    } finally {
      await sub.close();
    }
  });

  it('reports the entry a move with overwrite replaced as deleted', async () => {
    const sub = watch(ADMIN_KEY, v.volumeId, '/ow/');
    try {
      await sub.ready('/ow/probe');
      const a = await putText(gw, v, '/ow/a');
      const b = await putText(gw, v, '/ow/b');
      expect((await gw.call('POST', v.move, { from: '/ow/a', to: '/ow/b', overwrite: true })).status).toBe(200);
      const events = await sub.drain('/ow/end');
      expect(events.slice(2)).toEqual([
        { volumeId: v.volumeId, entryId: b.entry_id, path: '/ow/b', change: 'deleted', version: null, previousPath: null },
        { volumeId: v.volumeId, entryId: a.entry_id, path: '/ow/b', change: 'moved', version: 2, previousPath: '/ow/a' },
      ]);
    } finally {
      await sub.close();
    }
  });

  it('shows an app key only the paths it can read, never a path outside its mount', async () => {
    await gw.call('POST', v.mounts, { app_id: 'watcher', access_level: 'read', path_pattern: '/shared/**' });
    const key = await createKey(gw, 'acme', ['entries:read', 'volumes:read'], 'watcher');
    const sub = watch(key, v.volumeId);
    try {
      await sub.ready('/shared/probe');
      await putText(gw, v, '/hidden/a');
      await putText(gw, v, '/shared/b');
      await gw.call('POST', v.move, { from: '/hidden/a', to: '/shared/a' }); // appears for the app
      await gw.call('POST', v.move, { from: '/shared/b', to: '/hidden/b' }); // disappears for it
      await gw.call('DELETE', v.entry('/hidden/b'));
      await putText(gw, v, '/hidden/c');
      const events = await sub.drain('/shared/end');
      expect(events.map(shape)).toEqual([
        { path: '/shared/b', change: 'created', version: 1, previousPath: null },
        { path: '/shared/a', change: 'created', version: 2, previousPath: null },
        { path: '/shared/b', change: 'deleted', version: null, previousPath: null },
      ]);
      expect(JSON.stringify(sub.events)).not.toContain('/hidden');
    } finally {
      await sub.close();
    }
  });

  it('refuses another organisation, an unmounted app and a key without entries:read', async () => {
    const cases: [string, string][] = [
      [await createKey(gw, 'elsewhere', ['admin']), 'NOT_FOUND'],
      [await createKey(gw, 'acme', ['entries:read', 'volumes:read'], 'stranger'), 'NOT_FOUND'],
      [await createKey(gw, 'acme', ['volumes:read']), 'FORBIDDEN'],
    ];
    for (const [key, code] of cases) {
      const sub = watch(key, v.volumeId);
      try {
        await waitFor(async () => sub.errors.length > 0);
        expect(sub.errors[0].extensions.code).toBe(code);
        expect(sub.events).toEqual([]);
      } finally {
        await sub.close();
      }
    }
    const bad = watch(ADMIN_KEY, v.volumeId, '/a/../b');
    try {
      await waitFor(async () => bad.errors.length > 0);
      expect(bad.errors[0].extensions.code).toBe('VALIDATION_FAILED');
    } finally {
      await bad.close();
    }
  });
});
