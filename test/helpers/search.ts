import { type TestGateway, waitFor } from './app.js';

/** Waits until the volume holds `n` entries (any number when omitted), every one indexed. */
export async function indexed(g: TestGateway, volumeId: string, n?: number, timeoutMs = 30_000) {
  return waitFor(async () => {
    const rows = await g.app.database.prisma.entry.findMany({ where: { volumeId }, select: { isIndexed: true } });
    return rows.length > 0 && (n === undefined || rows.length === n) && rows.every((r) => r.isIndexed);
  }, timeoutMs);
}

/** Holds the merger before its next batch until `release()` (the runtime's test hook). */
export function holdMerger(gw: TestGateway): () => void {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  gw.app.runtime.hooks.beforeFreshMerge = () => gate;
  return () => {
    gw.app.runtime.hooks.beforeFreshMerge = undefined;
    release();
  };
}
