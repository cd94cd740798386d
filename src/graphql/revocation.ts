import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Runtime } from '../domain/shared/runtime.js';
import type { GraphQLContext } from './context.js';

// A subscription lives as long as its stream, which can be days: a key revoked meanwhile must end it.
// graphql-ws connections are closed by ws-server.ts; this ends the stream itself, whatever carries it
// (SSE above all), on every replica (the apiKeyRevoked event crosses them through Redis).

const isAsyncIterable = (x: unknown): x is AsyncIterable<unknown> => typeof x === 'object' && x !== null && Symbol.asyncIterator in x;

/** The final result a revoked key's subscription sends before its stream ends. */
const revokedResult = () => ({
  errors: [new GraphQLError('API key revoked', { extensions: { code: 'UNAUTHENTICATED' } })],
});

/** `source`, ended (with one UNAUTHENTICATED result) as soon as key `keyId` is revoked. */
async function* endOnRevocation(rt: Runtime, keyId: string, source: AsyncIterable<unknown>): AsyncGenerator<unknown> {
  const revocations = rt.events.subscribe('apiKeyRevoked')[Symbol.asyncIterator]();
  let onRevoked!: () => void;
  const revoked = new Promise<'revoked'>((resolve) => {
    onRevoked = () => resolve('revoked');
  });
  void (async () => {
    for (let next = await revocations.next(); !next.done; next = await revocations.next()) {
      if (next.value.keyId === keyId) return onRevoked();
    }
  })().catch((err) => rt.log.warn({ err }, 'subscription revocation watch stopped'));
  const events = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await Promise.race([events.next(), revoked]);
      if (next === 'revoked') {
        yield revokedResult();
        return;
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await revocations.return?.();
    // Not awaited: a source suspended in its own await (an async generator waiting for its next
    // event) settles a return only when it resumes, and the stream must end now, not then.
    void Promise.resolve(events.return?.()).catch(() => undefined);
  }
}

/** Ends every subscription of a key when that key is revoked. */
export function useRevocationEndsSubscriptions(rt: Runtime): Plugin {
  return {
    onSubscribe({ args }) {
      const p = (args.contextValue as Partial<GraphQLContext>).principal;
      if (p?.kind !== 'key' || !p.keyId) return;
      return {
        onSubscribeResult({ result, setResult }) {
          if (isAsyncIterable(result)) setResult(endOnRevocation(rt, p.keyId, result) as typeof result);
        },
      };
    },
  };
}
