import { type Client, type ClientOptions, createClient, type FormattedExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';

/** The graphql-ws endpoint of a gateway at `baseUrl`. */
export const wsUrl = (baseUrl: string) => `${baseUrl.replace('http', 'ws')}/graphql`;

export type WsClientOptions = Partial<Omit<ClientOptions, 'url' | 'webSocketImpl'>> & {
  /** How connection_init carries the key: `{ authorization: 'Bearer <key>' }` (the default) or `{ apiKey }`. */
  keyParam?: 'authorization' | 'apiKey';
};

/** A graphql-ws client for the gateway at `baseUrl`, no retries, sending `key` (none when undefined) at connection_init. */
export function wsClient(baseUrl: string, key: string | undefined, opts: WsClientOptions = {}): Client {
  const { keyParam = 'authorization', ...options } = opts;
  return createClient({
    url: wsUrl(baseUrl),
    webSocketImpl: WebSocket,
    ...(key ? { connectionParams: keyParam === 'apiKey' ? { apiKey: key } : { authorization: `Bearer ${key}` } } : {}),
    retryAttempts: 0,
    ...options,
  });
}

/** One subscription's outcome so far, collected as it arrives. */
export interface Subscription<T> {
  /** Every `next` message's data, as `pick` returns it (by default, the value of its one root field). */
  events: T[];
  /** GraphQL errors of `next` messages, and whatever the `error` sink received (error arrays flattened). */
  errors: any[];
  readonly completed: boolean;
  /** Resolves with the events when the server completes the operation; rejects with what the `error` sink gets. */
  done: Promise<T[]>;
  /** Resolves with the events once `condition` holds for them; rejects on an error, on completion first, or after `timeoutMs`. */
  until(condition: (events: T[]) => boolean, timeoutMs?: number): Promise<T[]>;
  /** Ends the operation; the connection stays. */
  stop(): void;
}

const firstRootField = (data: Record<string, unknown>) => Object.values(data)[0];

/** Subscribes on an existing client and collects what arrives. */
export function subscribeOn<T = any>(
  client: Client,
  query: string,
  variables: Record<string, unknown> = {},
  pick: (data: any) => T = firstRootField as (data: any) => T,
): Subscription<T> {
  const events: T[] = [];
  const errors: any[] = [];
  let completed = false;
  let failure: { error: unknown } | undefined;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of listeners) l();
  };
  const stop = client.subscribe<Record<string, unknown>>(
    { query, variables },
    {
      next: (msg) => {
        if (msg.errors) errors.push(...msg.errors);
        if (msg.data) events.push(pick(msg.data));
        notify();
      },
      error: (err) => {
        errors.push(...(Array.isArray(err) ? err : [err]));
        failure = { error: err };
        notify();
      },
      complete: () => {
        completed = true;
        notify();
      },
    },
  );

  const until = (condition: (events: T[]) => boolean, timeoutMs = 30_000) =>
    new Promise<T[]>((resolve, reject) => {
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        fn();
      };
      const check = () => {
        if (condition(events)) return finish(() => resolve(events));
        if (failure) return finish(() => reject(failure?.error));
        if (completed) finish(() => reject(new Error(`completed before the condition held; events: ${JSON.stringify(events)}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`condition not met in ${timeoutMs} ms; events: ${JSON.stringify(events)}`))),
        timeoutMs,
      );
      listeners.add(check);
      check();
    });

  const done = new Promise<T[]>((resolve, reject) => {
    const check = () => {
      if (failure) reject(failure.error);
      else if (completed) resolve(events);
    };
    listeners.add(check);
  });
  // Awaiting `done` is optional: a failure nobody waits for is not an unhandled rejection.
  done.catch(() => {});

  return {
    events,
    errors,
    get completed() {
      return completed;
    },
    done,
    until,
    stop,
  };
}

/**
 * Subscribes on a client of its own (see `wsClient`) to the gateway at `baseUrl`. `connected`
 * resolves once the connection is acknowledged; `close` ends the operation and the connection.
 */
export function subscribe<T = any>(
  baseUrl: string,
  key: string | undefined,
  query: string,
  variables: Record<string, unknown> = {},
  opts: WsClientOptions & { pick?: (data: any) => T } = {},
) {
  const { pick, ...clientOptions } = opts;
  const client = wsClient(baseUrl, key, clientOptions);
  // A turn after connection_ack, by when the subscribe message queued behind it has gone out.
  const connected = new Promise<void>((resolve) => client.on('connected', () => setImmediate(resolve)));
  const sub = subscribeOn<T>(client, query, variables, pick);
  return Object.assign(sub, {
    client,
    connected,
    close: async () => {
      sub.stop();
      await client.dispose();
    },
  });
}

/** Runs a query or subscription to its end over `client` and returns every result; rejects as the client does (e.g. a close code). */
export async function results(
  client: Client,
  query: string,
  variables?: Record<string, unknown>,
): Promise<FormattedExecutionResult<Record<string, unknown>, unknown>[]> {
  const all: FormattedExecutionResult<Record<string, unknown>, unknown>[] = [];
  for await (const result of client.iterate({ query, ...(variables ? { variables } : {}) })) all.push(result);
  return all;
}
