import SchemaBuilder, { BasePlugin, type PothosOutputFieldConfig, type SchemaTypes } from '@pothos/core';
import { GraphQLError, type GraphQLFieldResolver } from 'graphql';

/** The largest page a connection serves (`first`/`last`), as REST's `limit` (1-200). */
export const MAX_PAGE_SIZE = 200;

/**
 * Refuses a connection page larger than MAX_PAGE_SIZE (or negative) with BAD_USER_INPUT naming the
 * argument, instead of the silent clamp the Prisma and Relay plugins would apply: a client asking
 * for 500 rows must learn that it got at most 200, as a REST caller sending `limit=500` does.
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
          throw new GraphQLError(`${name} must be between 0 and ${MAX_PAGE_SIZE}; got ${value}`, {
            extensions: { code: 'BAD_USER_INPUT', argument: name, max: MAX_PAGE_SIZE },
          });
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
