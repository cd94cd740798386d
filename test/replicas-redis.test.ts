import path from 'node:path';
import { createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_KEY, startGateway, type TestGateway } from './helpers/app.js';
import { type Child, spawnChild } from './helpers/child.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

/**
 * Two gateway replicas on one database and one Redis: a subscriber on either sees the events of
 * writes made through the other (yoga's Redis event target). Redis runs on 127.0.0.1:6379 here.
 */
const REDIS_URL = 'redis://127.0.0.1:6379';
const ROOT = path.resolve(import.meta.dirname, '..');

let db: PgliteServer;
let a: TestGateway;
let b: { child: Child; url: string };

beforeAll(async () => {
  db = await startPgliteServer(20);
  const databaseUrl = db.url;
  a = await startGateway({ DATABASE_URL: databaseUrl, REDIS_URL });
  const child = spawnChild(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: databaseUrl,
      REDIS_URL,
      ADMIN_API_KEY: ADMIN_KEY,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      DATA_DIR: a.dataDir,
    },
  });
  const [, url] = await child.waitForStdout(/listening on (http:\/\/\S+)/, 90_000);
  b = { child, url: url as string };
}, 120_000);

afterAll(async () => {
  b?.child.proc.kill('SIGTERM');
  await b?.child.exited;
  await a?.stop();
  await db?.stop();
});

async function call(base: string, method: string, route: string, body?: unknown) {
  const res = await fetch(base + route, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** Subscribes to entryChanged on one replica; resolves with the events once `until` holds. */
function collect(base: string, volumeId: string, until: (events: any[]) => boolean) {
  const client = createClient({
    url: `${base.replace('http', 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { apiKey: ADMIN_KEY },
    retryAttempts: 0,
  });
  const events: any[] = [];
  let ready!: () => void;
  const subscribed = new Promise<void>((r) => {
    ready = r;
  });
  const done = new Promise<any[]>((resolve, reject) => {
    client.on('connected', () => setImmediate(ready));
    client.subscribe(
      { query: 'subscription($v: ID!) { entryChanged(volumeId: $v) { change path } }', variables: { v: volumeId } },
      {
        next: (msg) => {
          events.push(msg.data?.entryChanged ?? msg);
          if (until(events)) resolve(events);
        },
        error: reject,
        complete: () => resolve(events),
      },
    );
  });
  return { subscribed, done, dispose: () => client.dispose() };
}

describe('replicas sharing Postgres and Redis', () => {
  it('a subscriber on one replica sees writes made through the other, both ways', async () => {
    const ws = (await call(a.url, 'POST', '/v1/orgs/rep/workspaces', { name: 'r' })).body.workspace_id;
    const vol = (await call(b.url, 'POST', `/v1/orgs/rep/workspaces/${ws}/volumes`, { name: 'v' })).body.volume.volume_id;
    const entries = `/v1/orgs/rep/workspaces/${ws}/volumes/${vol}/entries`;

    const onA = collect(a.url, vol, (e) => e.length >= 1);
    const onB = collect(b.url, vol, (e) => e.some((x) => x.path === '/via-a'));
    await Promise.all([onA.subscribed, onB.subscribed]);
    // Subscriptions register with Redis asynchronously: write until the first event arrives.
    let i = 0;
    const writer = setInterval(() => {
      void call(b.url, 'PUT', `${entries}/via-b-${i++}`, { content_text: 'x' });
    }, 100);
    const first = await Promise.race([onA.done, new Promise<any[]>((_, r) => setTimeout(() => r(new Error('no event on A')), 20_000))]);
    clearInterval(writer);
    expect(first[0]).toMatchObject({ change: 'created' });
    expect(first[0].path).toMatch(/^\/via-b-\d+$/);

    const fromA = await call(a.url, 'PUT', `${entries}/via-a`, { content_text: 'y' });
    expect(fromA.status).toBe(201);
    const seenOnB = await onB.done;
    expect(seenOnB.find((e) => e.path === '/via-a')).toEqual({ change: 'created', path: '/via-a' });
    await Promise.all([onA.dispose(), onB.dispose()]);
  }, 60_000);
});
