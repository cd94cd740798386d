import pino, { type DestinationStream, type Logger } from 'pino';
import { currentRequest } from './http/request-log.js';
import { traceIds } from './telemetry/tracing.js';

/**
 * A JSON-lines logger at `level` (createApp makes one per gateway, from LOG_LEVEL). A line written
 * while handling a request carries its `request_id` (src/http/request-log.ts), and inside a traced
 * span its `trace_id` and `span_id` (src/telemetry/tracing.ts).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: undefined,
    mixin: () => {
      const r = currentRequest();
      return r ? { request_id: r.id, ...traceIds() } : traceIds();
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
