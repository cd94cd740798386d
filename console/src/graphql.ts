import { initGraphQLTada } from 'gql.tada';
import type { introspection } from './graphql-env.d.ts';

/**
 * Typed GraphQL operations: `graphql(\`query …\`)` checks the document against schema.graphql (through
 * the generated graphql-env.d.ts) and infers its result and variables types.
 */
export const graphql = initGraphQLTada<{
  introspection: introspection;
  scalars: {
    DateTime: string;
    JSON: unknown;
    SafeInt: number;
    File: File;
  };
}>();

export type { FragmentOf, ResultOf, VariablesOf } from 'gql.tada';
