import { graphql } from './graphql.ts';

/** Who a key belongs to: signing in checks a key with it. */
export const ViewerQuery = graphql(`
  query Viewer {
    viewer { kind orgId appId keyId scopes }
  }
`);
