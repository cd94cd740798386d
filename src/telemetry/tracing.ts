import { type Attributes, type Span, SpanStatusCode, trace } from '@opentelemetry/api';

// OpenTelemetry traces. The gateway always creates its spans through the API's global tracer,
// which is a no-op (nearly free) until a provider is registered: `startTracing` registers one when
// OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test hands in an exporter). Spans: one per HTTP request
// (http/request-log.ts), one per GraphQL operation (graphql/yoga.ts), one per blob store call,
// embedding call and job run (here and jobs/queue.ts), and Prisma's own for each query and SQL
// statement (@prisma/instrumentation). The SDK is loaded only when tracing is on.

export const tracer = () => trace.getTracer('volumes-gateway');

/** Runs `fn` in a span named `name` (its child spans nest under it); an error marks the span and is rethrown. */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer().startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      recordError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function recordError(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** The trace and span ids of the active span, for log lines (empty when there is none). */
export function traceIds(): { trace_id?: string; span_id?: string } {
  const ctx = trace.getActiveSpan()?.spanContext();
  if (!ctx || ctx.traceFlags === 0) return {};
  return { trace_id: ctx.traceId, span_id: ctx.spanId };
}

export interface TracingOptions {
  serviceName: string;
  /** OTLP/HTTP endpoint (…:4318); the exporter adds /v1/traces and reads the other OTEL_EXPORTER_OTLP_* variables. */
  endpoint?: string | undefined;
  /** Tests: spans go here (synchronously), not to an OTLP endpoint. */
  exporter?: import('@opentelemetry/sdk-trace-base').SpanExporter;
}

let started: Promise<{ shutdown(): Promise<void> }> | undefined;

/**
 * Registers the process's tracer provider (once per process: a second gateway in the same process
 * shares it) and Prisma's instrumentation. Resolves to a handle whose shutdown flushes the spans.
 */
export function startTracing(opts: TracingOptions): Promise<{ shutdown(): Promise<void> }> {
  started ??= (async () => {
    const [{ NodeTracerProvider }, { BatchSpanProcessor, SimpleSpanProcessor }, { resourceFromAttributes }, { registerInstrumentations }] =
      await Promise.all([
        import('@opentelemetry/sdk-trace-node'),
        import('@opentelemetry/sdk-trace-base'),
        import('@opentelemetry/resources'),
        import('@opentelemetry/instrumentation'),
      ]);
    const { PrismaInstrumentation } = await import('@prisma/instrumentation');
    let processor: import('@opentelemetry/sdk-trace-base').SpanProcessor;
    if (opts.exporter) processor = new SimpleSpanProcessor(opts.exporter);
    else {
      const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
      const base = (opts.endpoint ?? '').replace(/\/$/, '');
      processor = new BatchSpanProcessor(new OTLPTraceExporter(base ? { url: `${base}/v1/traces` } : {}));
    }
    const provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': opts.serviceName }),
      spanProcessors: [processor],
    });
    // Also installs the AsyncLocalStorage context manager and the W3C traceparent propagator.
    provider.register();
    registerInstrumentations({ tracerProvider: provider, instrumentations: [new PrismaInstrumentation()] });
    return { shutdown: () => provider.shutdown() };
  })();
  return started;
}
