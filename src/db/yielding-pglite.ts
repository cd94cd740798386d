import type { PGlite } from '@electric-sql/pglite';

// For a PGlite on the event loop's thread (one handed in by tests; the gateway's own runs in
// database-thread.ts): PGlite runs each statement synchronously on its thread, and its promises resolve
// as microtasks: a transaction of many statements (an entry's thousands of chunks) ran back to back
// without ever letting a timer or a socket in, so the server stopped answering for 20 s. Every
// statement the Prisma adapter sends through this wrapper first yields one turn of the event loop,
// so requests are parsed and answered between statements. (Statements still queue: PGlite runs one
// at a time.)

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

type Queryable = Pick<PGlite, 'query'>;

function yieldingQueryable<T extends Queryable>(target: T): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      if (prop === 'query') {
        return async (...args: Parameters<PGlite['query']>) => {
          await nextTurn();
          return obj.query(...args);
        };
      }
      if (prop === 'transaction') {
        const transaction = (obj as unknown as PGlite).transaction.bind(obj);
        return <R>(callback: (tx: Parameters<Parameters<PGlite['transaction']>[0]>[0]) => Promise<R>) =>
          transaction((tx) => callback(yieldingQueryable(tx)));
      }
      const value = Reflect.get(obj, prop, receiver);
      return typeof value === 'function' ? value.bind(obj) : value;
    },
  });
}

/** The PGlite instance as the Prisma adapter should see it: every query (in transactions too) yields first. */
export function yieldingPglite(pglite: PGlite): PGlite {
  return yieldingQueryable(pglite);
}
