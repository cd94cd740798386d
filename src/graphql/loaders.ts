import DataLoader from 'dataloader';
import type { FragmentDefinitionNode, GraphQLResolveInfo, SelectionSetNode } from 'graphql';
import type { GraphQLContext } from './context.js';

/**
 * The request's batch loader called `name` (made on first use): every `load` in one tick of the
 * resolvers becomes one call of `batch`, so a field resolved on N parents costs one query, not N.
 * No caching across ticks: a subscription's context lives long, and its later events must not see
 * rows loaded for its first one.
 */
export function loaderOf<K, V, C = K>(
  ctx: GraphQLContext,
  name: string,
  batch: (keys: readonly K[]) => Promise<(V | Error)[]>,
  cacheKeyFn?: (key: K) => C,
): DataLoader<K, V, C> {
  let loader = ctx.loaders.get(name) as DataLoader<K, V, C> | undefined;
  if (!loader) {
    loader = new DataLoader<K, V, C>(batch, { cache: false, ...(cacheKeyFn ? { cacheKeyFn } : {}) });
    ctx.loaders.set(name, loader);
  }
  return loader;
}

/** Whether the field being resolved selects `name` directly (through fragments too), e.g. `totalCount`. */
export function selectsField(info: GraphQLResolveInfo, name: string): boolean {
  const seen = new Set<string>();
  const inSet = (set: SelectionSetNode | undefined): boolean =>
    (set?.selections ?? []).some((s) => {
      if (s.kind === 'Field') return s.name.value === name;
      if (s.kind === 'InlineFragment') return inSet(s.selectionSet);
      if (seen.has(s.name.value)) return false;
      seen.add(s.name.value);
      const fragment: FragmentDefinitionNode | undefined = info.fragments[s.name.value];
      return inSet(fragment?.selectionSet);
    });
  return info.fieldNodes.some((node) => inSet(node.selectionSet));
}
