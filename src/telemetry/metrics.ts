import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

// The gateway's Prometheus metrics (served at /metrics, see app.ts). One registry per gateway, so
// two gateways in one process (tests) never mix their numbers. Counters and histograms are moved
// by the code that sees the event; gauges about state elsewhere (the job queue, the pool, open
// sockets) are read when Prometheus scrapes, from the sources createApp hands in.

/** Queued and running jobs of one kind, and how long the oldest has waited. */
export interface JobDepth {
  kind: string;
  status: string;
  count: number;
  oldestSeconds: number;
}

export interface MetricSources {
  /** Jobs in the durable queue by kind and status (one query per scrape). */
  jobs(): Promise<JobDepth[]>;
  /** Age in seconds of the oldest write still waiting to be indexed (0: none). */
  indexingLagSeconds(): Promise<number>;
  /** The server-mode connection pool (embedded mode has none). */
  pool(): { total: number; idle: number; waiting: number } | undefined;
  /** Open graphql-ws WebSockets. */
  websockets(): number;
}

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly subscriptions: Gauge<'transport'>;
  readonly blobErrors: Counter<'operation'>;
  readonly embedderErrors: Counter<'model'>;
  readonly rateLimited: Counter<'limit' | 'transport'>;
  readonly cpuTasks: Counter<'kind' | 'place' | 'outcome'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP requests by method, route template (/graphql for GraphQL; "unmatched" when no route matched) and status',
      labelNames: ['method', 'route', 'status'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.subscriptions = new Gauge({
      name: 'graphql_active_subscriptions',
      help: 'Live GraphQL subscriptions by transport (ws: graphql-ws, sse: server-sent events over HTTP)',
      labelNames: ['transport'],
      registers,
    });
    for (const transport of ['ws', 'sse']) this.subscriptions.set({ transport }, 0);
    this.blobErrors = new Counter({
      name: 'blob_store_errors_total',
      help: 'Blob store calls that failed, by operation (a missing object asked for is not an error)',
      labelNames: ['operation'],
      registers,
    });
    this.embedderErrors = new Counter({
      name: 'embedder_errors_total',
      help: 'Embedding calls that failed, by model',
      labelNames: ['model'],
      registers,
    });
    this.rateLimited = new Counter({
      name: 'rate_limited_total',
      help: 'Requests refused with 429 RATE_LIMITED, by limit (requests, upload_bytes, subscriptions) and transport',
      labelNames: ['limit', 'transport'],
      registers,
    });
    this.cpuTasks = new Counter({
      name: 'indexing_cpu_tasks_total',
      help: 'Chunking and built-in embedding tasks by kind, place (inline on the event loop for small inputs, or thread) and outcome (ok, timeout: stopped at INDEXING_TIMEOUT_MS, error)',
      labelNames: ['kind', 'place', 'outcome'],
      registers,
    });
    new Gauge({
      name: 'websocket_connections',
      help: 'Open graphql-ws WebSocket connections',
      registers,
      collect() {
        this.set(sources.websockets());
      },
    });
    new Gauge({
      name: 'db_pool_connections',
      help: 'Server-mode database pool connections by state (total, idle, waiting = requests queued for one)',
      labelNames: ['state'],
      registers,
      collect() {
        const pool = sources.pool();
        if (!pool) return;
        this.set({ state: 'total' }, pool.total);
        this.set({ state: 'idle' }, pool.idle);
        this.set({ state: 'waiting' }, pool.waiting);
      },
    });
    // One query feeds both job gauges: the second reuses the first's answer within the same scrape.
    let reading: Promise<JobDepth[]> | undefined;
    const read = () => {
      reading ??= sources.jobs().finally(() => {
        setImmediate(() => {
          reading = undefined;
        });
      });
      return reading;
    };
    const fill = async (gauge: Gauge<'kind' | 'status'>, pick: (j: JobDepth) => number) => {
      const rows = await read();
      gauge.reset();
      for (const j of rows) gauge.set({ kind: j.kind, status: j.status }, pick(j));
    };
    new Gauge({
      name: 'jobs_queued',
      help: 'Jobs in the durable queue by kind and status',
      labelNames: ['kind', 'status'],
      registers,
      collect() {
        return fill(this, (j) => j.count);
      },
    });
    new Gauge({
      name: 'jobs_oldest_age_seconds',
      help: 'Age of the oldest job in the queue by kind and status',
      labelNames: ['kind', 'status'],
      registers,
      collect() {
        return fill(this, (j) => j.oldestSeconds);
      },
    });
    new Gauge({
      name: 'indexing_lag_seconds',
      help: 'Age of the oldest write still waiting to be indexed (0: the index is up to date)',
      registers,
      async collect() {
        this.set(await sources.indexingLagSeconds());
      },
    });
  }
}
