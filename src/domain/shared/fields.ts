import { z } from 'zod';

/** Shared field rules: one definition each, so REST, GraphQL and OpenAPI agree. */
export const Name = z.string().trim().min(1).max(255);
export const Description = z.string().max(2000).nullable();
export const ShortId = z.string().trim().min(1).max(255);
/** Identifiers chosen by callers (org ids, app ids): URL-safe, no whitespace. */
export const ExternalId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]*$/, 'letters, digits and . _ : @ - only, starting with a letter or digit');
export const Tags = z
  .array(z.string().trim().min(1).max(64))
  .max(50)
  .transform((tags) => [...new Set(tags)]);
export const Uuid = z.uuid();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every id this API issues is a UUID; anything else cannot name a resource (and never reaches SQL). */
export function isId(value: string): boolean {
  return UUID.test(value);
}
