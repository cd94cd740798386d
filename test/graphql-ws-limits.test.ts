import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { type ClientOptions } from 'ws';
import {
  WS_REASON_IDLE_TIMEOUT,
  WS_REASON_TOO_MANY_CONNECTIONS_FOR_KEY,
  WS_REASON_TRY_AGAIN_LATER,
  WsCloseCode,
} from '../src/graphql/ws-server.js';
import { GRAPHQL_MAX_BODY_BYTES } from '../src/graphql/yoga.js';
import { ADMIN_KEY, createKey, startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { newVolume, putText, type TestVolume } from './helpers/entries.js';
import { results, subscribeOn, wsClient, wsUrl } from './helpers/graphql-ws.js';

// The graphql-ws endpoint's limits: credentials at connection_init, maxPayload, caps per key and in
// total, keep-alive, idle and init timeouts, and per-operation errors for bad `subscribe` messages.

const SUB = `subscription($id: ID!, $prefix: String) { entryChanged(volumeId: $id, pathPrefix: $prefix) { path } }`;
const SCOPES = ['volumes:read', 'entries:read'];
const MB = 1024 * 1024;

interface Closed {
  code: number;
  reason: string;
}

/** Rejects when `promise` has not settled within `ms` (so a missing close fails with a clear message). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]);
}

/** A raw graphql-transport-ws socket: hand-crafted messages, every message and ping it receives. */
class Raw {
  readonly ws: WebSocket;
  readonly messages: any[] = [];
  pings = 0;
  readonly closed: Promise<Closed>;
  private readonly opened: Promise<boolean>;

  constructor(g: TestGateway, opts: ClientOptions = {}) {
    this.ws = new WebSocket(wsUrl(g.url), 'graphql-transport-ws', opts);
    this.ws.on('message', (d) => this.messages.push(JSON.parse(String(d))));
    this.ws.on('ping', () => this.pings++);
    this.ws.on('error', () => {}); // shows as the close code
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })));
    this.opened = new Promise((resolve) => {
      this.ws.once('open', () => resolve(true));
      this.ws.once('close', () => resolve(false));
    });
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(msg: unknown) {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** Sends connection_init (no payload when `payload` is null) and resolves to 'ack' or the close. */
  async init(payload: Record<string, unknown> | null): Promise<'ack' | Closed> {
    if (!(await this.opened)) return this.closed;
    this.send(payload === null ? { type: 'connection_init' } : { type: 'connection_init', payload });
    return within(
      Promise.race([this.message((m) => m.type === 'connection_ack').then(() => 'ack' as const), this.closed]),
      30_000,
      'connection_ack or close',
    );
  }

  /** The first message matching `pred`, waiting for it; rejects if the socket closes first. */
  message(pred: (m: any) => boolean, timeoutMs = 30_000): Promise<any> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.ws.off('message', onMessage);
        this.ws.off('close', onClose);
      };
      const onMessage = () => {
        const found = this.messages.find(pred);
        if (found) {
          cleanup();
          resolve(found);
        }
      };
      const onClose = (code: number, reason: Buffer) => {
        cleanup();
        reject(new Error(`socket closed (${code} ${reason}) before the expected message`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`expected message not received in ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      this.ws.on('message', onMessage);
      this.ws.on('close', onClose);
      onMessage();
    });
  }

  subscribe(id: string, volumeId: string, prefix: string) {
    this.send({ id, type: 'subscribe', payload: { query: SUB, variables: { id: volumeId, prefix } } });
  }

  /** Paths an operation has received. */
  events(id: string): string[] {
    return this.messages.filter((m) => m.id === id && m.type === 'next').map((m) => m.payload.data?.entryChanged?.path);
  }

  errors(id: string): any[] {
    return this.messages.filter((m) => m.id === id && m.type === 'error');
  }

  async close() {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await within(this.closed, 30_000, 'close');
  }
}

/** Writes probes under `prefix` until the operation `id` on `raw` has received one: it is live. */
async function rawLive(gw: TestGateway, v: TestVolume, raw: Raw, id: string, prefix: string) {
  let n = 0;
  await waitFor(async () => {
    if (raw.errors(id).length) throw new Error(`${id} failed: ${JSON.stringify(raw.errors(id))}`);
    await putText(gw, v, `${prefix}probe-${n++}`);
    return raw.events(id).some((p) => p.includes('/probe-'));
  }, 30_000);
}

/** A graphql-ws client (lazy, no retries) authenticating with `key`, recording its closes. */
function client(g: TestGateway, key: string | undefined, opts: { lazy?: boolean } = {}) {
  const closes: Closed[] = [];
  let connected = false;
  const c = wsClient(g.url, key, {
    keyParam: 'apiKey',
    lazy: opts.lazy ?? true,
    onNonLazyError: () => {},
    on: {
      connected: () => {
        connected = true;
      },
      closed: (e) => {
        const { code, reason } = e as Closed;
        closes.push({ code, reason });
      },
    },
  });
  return {
    client: c,
    closes,
    get connected() {
      return connected;
    },
  };
}

/** entryChanged over a graphql-ws client, collecting paths and errors. */
const subscribeEntries = (c: Client, volumeId: string, prefix: string) =>
  subscribeOn<string>(c, SUB, { id: volumeId, prefix }, (data) => data.entryChanged.path);

/**
 * Subscribes (a new operation each try) until one goes live; tries that the cap refuses are
 * retried, since the server sees completions and closes asynchronously.
 */
async function subscribeWhenFree(gw: TestGateway, v: TestVolume, c: Client, name: string) {
  let attempt = 0;
  return waitFor(async () => {
    const prefix = `/${name}-${attempt++}/`;
    const s = subscribeEntries(c, v.volumeId, prefix);
    for (let i = 0; i < 200; i++) {
      if (s.errors.length) {
        expect(s.errors[0].extensions?.code).toBe('RATE_LIMITED');
        return undefined;
      }
      await putText(gw, v, `${prefix}probe-${i}`);
      if (s.events.length) return s;
    }
    throw new Error(`${prefix}: neither live nor refused`);
  }, 30_000);
}

async function clientLive(gw: TestGateway, v: TestVolume, sub: ReturnType<typeof subscribeEntries>, prefix: string) {
  let n = 0;
  await waitFor(async () => {
    if (sub.errors.length) throw new Error(`subscription failed: ${JSON.stringify(sub.errors)}`);
    await putText(gw, v, `${prefix}probe-${n++}`);
    return sub.events.some((p) => p.includes('/probe-'));
  }, 30_000);
}

/** An operation whose variable can be padded to any size. */
const PADDED = 'query($pad: String!) { __type(name: $pad) { name } }';

/** A subscribe message of exactly `bytes` bytes (a valid operation with a padded variable). */
function bigSubscribe(bytes: number): Buffer {
  const head = Buffer.from(`{"id":"big","type":"subscribe","payload":{"query":"${PADDED}","variables":{"pad":"`);
  const tail = Buffer.from('"}}}');
  const buf = Buffer.alloc(bytes, 'a');
  head.copy(buf, 0);
  tail.copy(buf, bytes - tail.length);
  return buf;
}

// Frames sent unmasked (an all-zero mask): ws then writes the caller's buffer as it is, so the
// client side of these tests adds no copies of its own to the process' RSS.
const noMask: ClientOptions = { generateMask: (mask: Buffer) => void mask.fill(0) };

describe('graphql-ws: credentials, payload size, caps per key, bad subscribes', () => {
  let gw: TestGateway;
  let v: TestVolume;
  beforeAll(async () => {
    gw = await startGateway({ WS_MAX_CONNECTIONS_PER_KEY: '3', WS_MAX_SUBSCRIPTIONS_PER_KEY: '2', SWEEP_INTERVAL_MS: '3600000' });
    v = await newVolume(gw, 'wsorg');
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('closes connection_init without credentials or with bad ones with 4403, and acknowledges a valid key', async () => {
    for (const payload of [
      null,
      {},
      { authorization: '' },
      { apiKey: 'vgk_not-a-real-key-0123456789' },
      { authorization: 'Bearer nope' },
    ]) {
      const raw = new Raw(gw);
      expect(await raw.init(payload), JSON.stringify(payload)).toEqual({ code: 4403, reason: 'Forbidden' });
    }

    // The same through graphql-ws' own client.
    for (const key of [undefined, 'not-a-key']) {
      const { client: c } = client(gw, key);
      await expect(results(c, '{ __typename }')).rejects.toMatchObject({ code: 4403 });
      await c.dispose();
    }

    const key = await createKey(gw, 'wsorg', SCOPES);
    const raw = new Raw(gw);
    expect(await raw.init({ authorization: `Bearer ${key}` })).toBe('ack');
    await raw.close();
    const { client: c } = client(gw, key);
    expect(await results(c, '{ __typename }')).toEqual([{ data: { __typename: 'Query' } }]);
    await c.dispose();
  });

  it('refuses a message over the HTTP body limit from its header (1009), keeps serving, RSS bounded', async () => {
    const [key, key2, key3] = [
      await createKey(gw, 'wsorg', SCOPES),
      await createKey(gw, 'wsorg', SCOPES),
      await createKey(gw, 'wsorg', SCOPES),
    ];
    expect(GRAPHQL_MAX_BODY_BYTES).toBe(25_000_000);

    // A large message under the limit still works.
    const ok = new Raw(gw, noMask);
    expect(await ok.init({ apiKey: key })).toBe('ack');
    ok.send({ id: 'ok', type: 'subscribe', payload: { query: PADDED, variables: { pad: 'b'.repeat(2 * MB) } } });
    expect(await ok.message((m) => m.id === 'ok')).toEqual({ id: 'ok', type: 'next', payload: { data: { __type: null } } });

    const big = bigSubscribe(60 * MB);
    const over = bigSubscribe(GRAPHQL_MAX_BODY_BYTES + 1);
    const rssBefore = process.memoryUsage().rss;
    const raw = new Raw(gw, noMask);
    expect(await raw.init({ apiKey: key })).toBe('ack');
    raw.ws.send(big, { binary: false });
    expect((await within(raw.closed, 30_000, 'close after 60 MB')).code).toBe(1009);

    // Three at once, each just over the limit.
    const three = [new Raw(gw, noMask), new Raw(gw, noMask), new Raw(gw, noMask)];
    for (const r of three) expect(await r.init({ apiKey: key2 })).toBe('ack');
    for (const r of three) r.ws.send(over, { binary: false });
    for (const r of three) expect((await within(r.closed, 30_000, 'close after 25 MB + 1')).code).toBe(1009);
    const growth = process.memoryUsage().rss - rssBefore;
    expect(growth, `RSS grew by ${(growth / MB).toFixed(1)} MB`).toBeLessThan(64 * MB);

    // The other connection, and new ones, still work.
    expect(ok.open).toBe(true);
    ok.send({ id: 'ok2', type: 'subscribe', payload: { query: '{ __typename }' } });
    expect((await ok.message((m) => m.id === 'ok2' && m.type === 'next')).payload).toEqual({ data: { __typename: 'Query' } });
    await ok.close();
    const after = new Raw(gw);
    expect(await after.init({ apiKey: key3 })).toBe('ack');
    await after.close();
  });

  it('refuses a fragmented message once its fragments pass the limit (1009), buffering at most the limit', async () => {
    const key = await createKey(gw, 'wsorg', SCOPES);
    const chunk = Buffer.alloc(MB, 'a');
    const rssBefore = process.memoryUsage().rss;
    const raw = new Raw(gw, noMask);
    expect(await raw.init({ apiKey: key })).toBe('ack');
    // 40 fragments of 1 MB, the message never finished: the server gives up past 25 MB.
    for (let i = 0; i < 40 && raw.open; i++) raw.ws.send(chunk, { binary: false, fin: false });
    expect((await within(raw.closed, 30_000, 'close after fragments')).code).toBe(1009);
    const growth = process.memoryUsage().rss - rssBefore;
    expect(growth, `RSS grew by ${(growth / MB).toFixed(1)} MB`).toBeLessThan(64 * MB);
  });

  it('caps connections per key (4429): other keys still connect, closing one frees a slot', async () => {
    const key = await createKey(gw, 'wsorg', SCOPES);
    const other = await createKey(gw, 'wsorg', SCOPES);
    const held = [new Raw(gw), new Raw(gw), new Raw(gw)];
    for (const r of held) expect(await r.init({ apiKey: key })).toBe('ack');

    const fourth = new Raw(gw);
    expect(await fourth.init({ apiKey: key })).toEqual({
      code: WsCloseCode.TooManyConnectionsForKey,
      reason: WS_REASON_TOO_MANY_CONNECTIONS_FOR_KEY,
    });
    expect(WsCloseCode.TooManyConnectionsForKey).toBe(4429);
    // graphql-ws' client sees the same close (and does not retry it).
    const { client: c, closes } = client(gw, key);
    await expect(results(c, '{ __typename }')).rejects.toMatchObject({ code: 4429 });
    await c.dispose();
    expect(closes[0]).toEqual({ code: 4429, reason: WS_REASON_TOO_MANY_CONNECTIONS_FOR_KEY });

    // Another key is not affected; the held connections are still open and working.
    const others = [new Raw(gw), new Raw(gw)];
    for (const r of others) expect(await r.init({ apiKey: other })).toBe('ack');
    held[0]!.send({ id: 'q', type: 'subscribe', payload: { query: '{ __typename }' } });
    expect((await held[0]!.message((m) => m.id === 'q' && m.type === 'complete')).type).toBe('complete');

    // Closing one frees its slot (as soon as the server has seen the close).
    await held.pop()!.close();
    const again = await waitFor(async () => {
      const r = new Raw(gw);
      const outcome = await r.init({ apiKey: key });
      return outcome === 'ack' ? r : undefined;
    }, 30_000);
    // … and only one.
    expect(await new Raw(gw).init({ apiKey: key })).toMatchObject({ code: 4429 });

    for (const r of [...held, ...others, again]) await r.close();
  });

  it('caps live subscriptions per key across connections: the next one gets an error for its id only', async () => {
    const key = await createKey(gw, 'wsorg', SCOPES);
    const a = client(gw, key);
    const b = client(gw, key);
    const s1 = subscribeEntries(a.client, v.volumeId, '/cap1/');
    await clientLive(gw, v, s1, '/cap1/');
    const s2 = subscribeEntries(b.client, v.volumeId, '/cap2/');
    await clientLive(gw, v, s2, '/cap2/');

    // A third, on the first connection: an `error` message for that operation, nothing else.
    const s3 = subscribeEntries(a.client, v.volumeId, '/cap3/');
    await waitFor(async () => s3.errors.length > 0, 30_000);
    expect(s3.errors).toEqual([
      { message: 'Too many live subscriptions for this key (at most 2)', extensions: { code: 'RATE_LIMITED', limit: 2 } },
    ]);
    expect(s3.events).toEqual([]);

    // The first two keep receiving events; the connections stayed open.
    await putText(gw, v, '/cap1/after');
    await putText(gw, v, '/cap2/after');
    await waitFor(async () => s1.events.includes('/cap1/after') && s2.events.includes('/cap2/after'), 30_000);
    expect(a.closes).toEqual([]);
    expect(b.closes).toEqual([]);
    expect(s1.errors).toEqual([]);
    expect(s2.errors).toEqual([]);

    // Queries are not subscriptions: not capped.
    expect(await results(a.client, '{ __typename }')).toEqual([{ data: { __typename: 'Query' } }]);

    // Completing one frees its place (the server sees the complete asynchronously: retry).
    s2.stop();
    const s4 = await subscribeWhenFree(gw, v, a.client, 'cap4');
    s4.stop();

    // A subscription that fails (unknown volume) ends and keeps no place: s1 and one more go live.
    const failed = subscribeEntries(b.client, 'no-such-volume', '/x/');
    await waitFor(async () => failed.completed, 30_000);
    expect(failed.errors.map((e) => e.extensions?.code)).toEqual(['NOT_FOUND']);
    const s5 = await subscribeWhenFree(gw, v, a.client, 'cap5');
    const refused = subscribeEntries(b.client, v.volumeId, '/cap6/');
    await waitFor(async () => refused.errors.length > 0, 30_000);
    expect(refused.errors[0].extensions.code).toBe('RATE_LIMITED');

    // A socket that closes frees its subscriptions: close connection a (s1, s5) entirely.
    await a.client.dispose();
    expect(s5.errors).toEqual([]);
    const c = client(gw, key);
    await subscribeWhenFree(gw, v, c.client, 'cap7');
    await subscribeWhenFree(gw, v, c.client, 'cap8');
    const s9 = subscribeEntries(c.client, v.volumeId, '/cap9/');
    await waitFor(async () => s9.errors.length > 0, 30_000);
    expect(s9.errors[0].extensions.code).toBe('RATE_LIMITED');

    await b.client.dispose();
    await c.client.dispose();
  });

  it('answers a malformed subscribe with an error for its id; the connection and its other subscriptions live on', async () => {
    const key = await createKey(gw, 'wsorg', SCOPES);
    const raw = new Raw(gw);
    expect(await raw.init({ apiKey: key })).toBe('ack');
    raw.subscribe('live', v.volumeId, '/malformed/');
    await rawLive(gw, v, raw, 'live', '/malformed/');

    const bad: [string, Record<string, unknown>, string][] = [
      ['syntax', { query: 'subscription { ' }, 'GRAPHQL_PARSE_FAILED'],
      ['tokens', { query: `{ ${'__typename '.repeat(6000)}}` }, 'GRAPHQL_PARSE_FAILED'],
      ['invalid', { query: 'subscription { noSuchField }' }, 'GRAPHQL_VALIDATION_FAILED'],
      ['opname', { query: '{ __typename }', operationName: 'Nope' }, 'BAD_USER_INPUT'],
    ];
    for (const [id, payload, code] of bad) {
      raw.send({ id, type: 'subscribe', payload });
      const err = await raw.message((m) => m.id === id);
      expect(err.type, id).toBe('error');
      expect(err.payload[0].extensions.code, id).toBe(code);
    }
    // Variables that do not coerce fail in execution: a result with errors, then complete.
    raw.send({ id: 'vars', type: 'subscribe', payload: { query: SUB, variables: { id: { not: 'an id' } } } });
    const varsResult = await raw.message((m) => m.id === 'vars');
    expect(varsResult.type).toBe('next');
    expect(varsResult.payload.errors[0].extensions.code).toBe('BAD_USER_INPUT');

    expect(raw.open).toBe(true);
    await putText(gw, v, '/malformed/after');
    await raw.message((m) => m.id === 'live' && m.payload?.data?.entryChanged?.path === '/malformed/after');
    // The failed ones took no subscription slot (the key's cap is 2): one more goes live.
    raw.subscribe('live2', v.volumeId, '/malformed2/');
    await rawLive(gw, v, raw, 'live2', '/malformed2/');

    // A message that is not a valid protocol message at all is the spec's 4400.
    raw.send({ id: 'x', type: 'subscribe', payload: { query: '{ __typename }', variables: 'not an object' } });
    expect(await within(raw.closed, 30_000, 'close')).toEqual({ code: 4400, reason: 'Invalid message received' });
  });
});

describe('graphql-ws: init timeout, idle timeout, keep-alive', () => {
  let gw: TestGateway;
  let v: TestVolume;
  beforeAll(async () => {
    gw = await startGateway({
      WS_CONNECTION_INIT_TIMEOUT_MS: '1000',
      WS_IDLE_TIMEOUT_MS: '500',
      WS_KEEPALIVE_MS: '1000',
      SWEEP_INTERVAL_MS: '3600000',
    });
    v = await newVolume(gw, 'idleorg');
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('closes a socket that sends no connection_init in time (4408)', async () => {
    const raw = new Raw(gw);
    expect(await within(raw.closed, 30_000, 'init timeout')).toEqual({ code: 4408, reason: 'Connection initialisation timeout' });
  });

  it('closes an idle connection (4408 Idle timeout), but not while a subscription is live', async () => {
    const idle = new Raw(gw);
    expect(await idle.init({ apiKey: ADMIN_KEY })).toBe('ack');
    const busy = new Raw(gw);
    expect(await busy.init({ apiKey: ADMIN_KEY })).toBe('ack');
    busy.subscribe('s', v.volumeId, '/idle/');
    await rawLive(gw, v, busy, 's', '/idle/');

    expect(await within(idle.closed, 30_000, 'idle close')).toEqual({ code: WsCloseCode.IdleTimeout, reason: WS_REASON_IDLE_TIMEOUT });
    expect(WsCloseCode.IdleTimeout).toBe(4408);

    // Live for several idle timeouts after the idle one was closed, receiving events.
    const until = Date.now() + 4 * 500;
    let n = 0;
    await waitFor(async () => {
      const path = `/idle/e-${n++}`;
      await putText(gw, v, path);
      await busy.message((m) => m.id === 's' && m.payload?.data?.entryChanged?.path === path);
      return Date.now() > until;
    }, 30_000);
    expect(busy.open).toBe(true);

    // Once its subscription completes, it is idle too.
    busy.send({ id: 's', type: 'complete' });
    expect(await within(busy.closed, 30_000, 'idle close after complete')).toEqual({ code: 4408, reason: WS_REASON_IDLE_TIMEOUT });
  });

  it('terminates a socket that stops answering pings, keeps one that answers', async () => {
    // Both hold a live subscription, so only the keep-alive can close them.
    const deaf = new Raw(gw, { autoPong: false });
    const alive = new Raw(gw);
    for (const [r, id] of [
      [deaf, 'd'],
      [alive, 'a'],
    ] as const) {
      expect(await r.init({ apiKey: ADMIN_KEY })).toBe('ack');
      r.subscribe(id, v.volumeId, `/ka-${id}/`);
      await rawLive(gw, v, r, id, `/ka-${id}/`);
    }
    const closed = await within(deaf.closed, 30_000, 'termination');
    expect(closed.code).toBe(1006); // terminated: no close frame
    expect(deaf.pings).toBeGreaterThanOrEqual(1);
    await waitFor(async () => alive.pings >= 3, 30_000);
    expect(alive.open).toBe(true);
    await alive.close();
  });
});

describe('graphql-ws: global connection cap', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ WS_MAX_CONNECTIONS: '2', SWEEP_INTERVAL_MS: '3600000' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  it('closes sockets beyond WS_MAX_CONNECTIONS with 1013, whatever their key', async () => {
    const held = [new Raw(gw), new Raw(gw)];
    for (const r of held) expect(await r.init({ apiKey: ADMIN_KEY })).toBe('ack');
    const key = await createKey(gw, 'glob', SCOPES);
    const third = new Raw(gw);
    expect(await third.init({ apiKey: key })).toEqual({ code: WsCloseCode.TryAgainLater, reason: WS_REASON_TRY_AGAIN_LATER });
    expect(WsCloseCode.TryAgainLater).toBe(1013);
    await held.pop()!.close();
    const again = await waitFor(async () => {
      const r = new Raw(gw);
      return (await r.init({ apiKey: key })) === 'ack' ? r : undefined;
    }, 30_000);
    await again.close();
    await held[0]!.close();
  });
});
