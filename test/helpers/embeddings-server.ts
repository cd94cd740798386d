import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HashingEmbedder } from '../../src/indexing/embedders/hashing.js';

/**
 * A real HTTP server speaking the OpenAI embeddings protocol, standing in for a hosted provider
 * (the network here reaches none). Vectors come from the hashing embedder so results stay
 * meaningful; it counts every text it embeds and can be slowed down or made to fail.
 */
export interface EmbeddingsServer {
  url: string;
  /** Every text embedded, in order. */
  texts: string[];
  requests: number;
  /** Milliseconds to wait before answering each request. */
  delayMs: number;
  /** Requests still to answer 500 (transient failures). */
  failNext: number;
  /** Texts containing this answer 400 (a permanent failure). */
  poison: string | undefined;
  /** Holds every request until `release()`: lets a test subscribe before a job gets anywhere. */
  hold(): void;
  /** Requests waiting at the hold right now. */
  held: number;
  /** Once this many texts are embedded, hold every later request (until `release()`). */
  holdAfter: number | undefined;
  release(): void;
  close(): Promise<void>;
}

export async function startEmbeddingsServer(dims = 1024): Promise<EmbeddingsServer> {
  const embedder = new HashingEmbedder(dims);
  const state = {
    texts: [] as string[],
    requests: 0,
    delayMs: 0,
    failNext: 0,
    poison: undefined as string | undefined,
    held: 0,
    holdAfter: undefined as number | undefined,
  };
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const hold = () => {
    gate ??= new Promise<void>((r) => {
      open = r;
    });
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      state.requests++;
      if (state.holdAfter !== undefined && state.texts.length >= state.holdAfter) hold();
      if (gate) {
        state.held++;
        await gate;
        state.held--;
      }
      if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { input: string[]; dimensions?: number };
      if (state.failNext > 0) {
        state.failNext--;
        res.writeHead(500).end('{"error":"try again"}');
        return;
      }
      if (state.poison && body.input.some((t) => t.includes(state.poison as string))) {
        res.writeHead(400).end('{"error":"input rejected"}');
        return;
      }
      state.texts.push(...body.input);
      const data = body.input.map((t, index) => ({ object: 'embedding', index, embedding: embedder.embedOne(t) }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/v1`,
    hold,
    release: () => {
      open?.();
      gate = undefined;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }) as EmbeddingsServer;
}

/** Gateway settings that add the `openai:fake-embed` embedder served by `server` (and quick job polling). */
export function fakeEmbedderEnv(server: EmbeddingsServer, dims = 1024): Record<string, string> {
  return { EMBEDDINGS_URL: server.url, EMBEDDINGS_MODEL: 'fake-embed', EMBEDDINGS_DIMS: String(dims), JOB_POLL_MS: '50' };
}
