import pino from 'pino';

/** The process logger (JSON lines). Level is set from LOG_LEVEL by createApp. */
export const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: undefined });
