import type { TadaDocumentNode } from 'gql.tada';
import { print } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import { storedKey } from './session.ts';

/** One input the API refused, named as in the GraphQL input (`input.name`, `filters.tags`). */
export interface FieldIssue {
  path: (string | number)[];
  message: string;
}

interface GraphQLErrorShape {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; fields?: { path: (string | number)[]; message: string }[] };
}

/** An error the API answered (or the network failed with), with its code and the fields it names. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly fields: FieldIssue[] = [],
  ) {
    super(message);
  }

  static from(errors: readonly GraphQLErrorShape[]): ApiError {
    const first = errors[0];
    const fields = errors.flatMap((e) => e.extensions?.fields ?? []);
    const message = [...new Set(errors.map((e) => e.message))].join(' · ');
    return new ApiError(message || 'The request failed', first?.extensions?.code, fields);
  }
}

/** The message an input gets when the API refused it (matched on the last named segment). */
export function fieldError(error: unknown, name: string): string | undefined {
  if (!(error instanceof ApiError)) return undefined;
  return error.fields.find((f) => f.path.filter((s) => typeof s === 'string').at(-1) === name)?.message;
}

/** Called when the API says the key is no longer valid (revoked while signed in, say). */
let onUnauthenticated: (() => void) | undefined;
export function setUnauthenticatedHandler(handler: () => void): void {
  onUnauthenticated = handler;
}

function authHeader(key: string | null): Record<string, string> {
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** Throws the answer's errors; a refusal of the signed-in key (not of one being tried) signs out. */
function fail(errors: readonly GraphQLErrorShape[], sessionKey: boolean): never {
  const error = ApiError.from(errors);
  if (error.code === 'UNAUTHENTICATED' && sessionKey) onUnauthenticated?.();
  throw error;
}

/**
 * Runs a query or mutation over HTTP (POST /graphql, JSON) with the signed-in key, or `key` when
 * given (signing in). Resolves to the data; any error (field errors included) rejects with ApiError.
 */
export async function request<R, V>(doc: TadaDocumentNode<R, V>, variables: V, key: string | null = storedKey()): Promise<R> {
  let res: Response;
  try {
    res = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...authHeader(key) },
      body: JSON.stringify({ query: print(doc), variables }),
    });
  } catch {
    throw new ApiError('The gateway cannot be reached', 'NETWORK');
  }
  let body: { data?: R | null; errors?: GraphQLErrorShape[] };
  try {
    body = await res.json();
  } catch {
    throw new ApiError(`The gateway answered ${res.status} ${res.statusText}`, 'HTTP');
  }
  if (body.errors?.length) fail(body.errors, key !== null && key === storedKey());
  if (!body.data) throw new ApiError(`The gateway answered ${res.status} without data`, 'HTTP');
  return body.data;
}

export interface UploadHandle<R> {
  done: Promise<R>;
  abort(): void;
}

/**
 * A mutation with one file (the GraphQL multipart request spec) over XMLHttpRequest, which reports
 * upload progress (fetch cannot). The file goes in the `file` variable.
 */
export function upload<R, V extends { file: File }>(
  doc: TadaDocumentNode<R, V>,
  variables: V,
  onProgress: (sent: number, total: number) => void,
): UploadHandle<R> {
  const xhr = new XMLHttpRequest();
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: print(doc), variables: { ...variables, file: null } }));
  form.append('map', JSON.stringify({ 0: ['variables.file'] }));
  form.append('0', variables.file, variables.file.name);
  const done = new Promise<R>((resolve, reject) => {
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : variables.file.size);
    xhr.onerror = () => reject(new ApiError('The upload could not reach the gateway', 'NETWORK'));
    xhr.onabort = () => reject(new ApiError('Upload cancelled', 'ABORTED'));
    xhr.onload = () => {
      try {
        const body = JSON.parse(xhr.responseText) as { data?: R | null; errors?: GraphQLErrorShape[] };
        if (body.errors?.length) fail(body.errors, true);
        if (!body.data) throw new ApiError(`The gateway answered ${xhr.status} without data`, 'HTTP');
        resolve(body.data);
      } catch (err) {
        reject(err instanceof ApiError ? err : new ApiError(`The gateway answered ${xhr.status}`, 'HTTP'));
      }
    };
  });
  xhr.open('POST', '/graphql');
  for (const [name, value] of Object.entries(authHeader(storedKey()))) xhr.setRequestHeader(name, value);
  xhr.setRequestHeader('accept', 'application/graphql-response+json, application/json');
  xhr.send(form);
  return { done, abort: () => xhr.abort() };
}

let socket: Client | undefined;
let connected = false;
const connectedListeners = new Set<(up: boolean) => void>();

/** One graphql-ws connection per signed-in session, opened on the first subscription (same origin, /graphql). */
function sockets(): Client {
  if (!socket) {
    socket = createClient({
      url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
      connectionParams: () => authHeader(storedKey()),
      lazy: true,
      retryAttempts: 5,
    });
    socket.on('connected', () => {
      connected = true;
      for (const l of connectedListeners) l(true);
    });
    socket.on('closed', () => {
      connected = false;
      for (const l of connectedListeners) l(false);
    });
  }
  return socket;
}

/** Follows whether the subscription connection is up (called at once with the current state). */
export function watchConnection(listener: (up: boolean) => void): () => void {
  connectedListeners.add(listener);
  listener(connected);
  return () => connectedListeners.delete(listener);
}

/** Closes the subscription connection (signing out). */
export function closeSockets(): void {
  void socket?.dispose();
  socket = undefined;
  connected = false;
}

export interface SubscriptionHandlers<R> {
  next(data: R): void;
  error?(error: ApiError): void;
  /** The server ended the subscription (a reindex that finished, say). */
  complete?(): void;
}

/** Subscribes over graphql-ws; returns the unsubscribe function. */
export function subscribe<R, V>(doc: TadaDocumentNode<R, V>, variables: V, handlers: SubscriptionHandlers<R>): () => void {
  return sockets().subscribe<R>(
    { query: print(doc), variables: variables as Record<string, unknown> },
    {
      next: (result) => {
        if (result.errors?.length) handlers.error?.(ApiError.from(result.errors as GraphQLErrorShape[]));
        else if (result.data) handlers.next(result.data);
      },
      error: (err) => {
        if (Array.isArray(err)) handlers.error?.(ApiError.from(err as GraphQLErrorShape[]));
        else if (err instanceof Error) handlers.error?.(new ApiError(err.message, 'SUBSCRIPTION'));
        else {
          const reason = (err as CloseEvent | undefined)?.reason;
          handlers.error?.(new ApiError(`Live updates stopped${reason ? `: ${reason}` : ''}`, 'SUBSCRIPTION'));
        }
      },
      complete: () => handlers.complete?.(),
    },
  );
}
