import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import type { GraphQLFieldResolver } from 'graphql';
import { ValidationError } from '../domain/shared/errors.js';
import { MAX_LIMIT } from '../domain/shared/pagination.js';

/** The largest page a connection serves (`first`/`last`): REST's `limit` cap, the same rule. */
export const MAX_PAGE_SIZE = MAX_LIMIT;

/**
 * Refuses a connection page larger than MAX_PAGE_SIZE (or negative) as a validation error naming
 * the argument, instead of the silent clamp the Prisma and Relay plugins would apply: a client
 * asking for 500 rows must learn that it would get at most 200, as a REST caller sending
 * `limit=500` does. VALIDATION_FAILED with `fields`, as every other argument rule of this schema
 * (`offset`, `after`, `Volume.entries(first: 0)`) answers.
 */
export class PageSizePlugin<Types extends SchemaTypes> extends BasePlugin<Types> {
  override wrapResolve(
    resolver: GraphQLFieldResolver<unknown, Types['Context'], object>,
    fieldConfig: PothosOutputFieldConfig<Types>,
  ): GraphQLFieldResolver<unknown, Types['Context'], object> {
    const paged = ['first', 'last'].filter((name) => name in fieldConfig.args);
    if (paged.length === 0) return resolver;
    return (parent, args, ctx, info) => {
      for (const name of paged) {
        const value = (args as Record<string, unknown>)[name];
        if (typeof value === 'number' && (value < 0 || value > MAX_PAGE_SIZE)) {
          throw ValidationError.field([name], `${name} must be between 0 and ${MAX_PAGE_SIZE}`, value, 'page_size');
        }
      }
      return resolver(parent, args, ctx, info);
    };
  }
}

declare global {
  export namespace PothosSchemaTypes {
    export interface Plugins<Types extends SchemaTypes> {
      pageSize: PageSizePlugin<Types>;
    }
  }
}

SchemaBuilder.registerPlugin('pageSize', PageSizePlugin);
