import pino, { type Logger } from 'pino';

/** A JSON-lines logger at `level` (createApp makes one per gateway, from LOG_LEVEL). */
export function createLogger(level: string): Logger {
  return pino({ level, base: undefined });
}
