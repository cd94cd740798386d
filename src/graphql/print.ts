import { lexicographicSortSchema, printSchema } from 'graphql';
import { schema } from './schema/index.js';

/** The SDL committed as schema.graphql (sorted so diffs show real changes only). */
export function printGraphQLSchema(): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
