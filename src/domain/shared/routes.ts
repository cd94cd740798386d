// Where a call is aimed: the path segments every operation of a resource carries, as one value
// (the same shape for REST paths, GraphQL ids resolved to a route, and job payloads).

/** Where in the input a value sits, for validation errors (`['body', 'filters', 'tags', 0]`). */
export type Loc = (string | number)[];

export interface OrgRoute {
  orgId: string;
}

export interface WorkspaceRoute extends OrgRoute {
  workspaceId: string;
}

export interface VolumeRoute extends WorkspaceRoute {
  volumeId: string;
}

/** The route of a volume row. */
export function routeOfVolume(v: { id: string; orgId: string; workspaceId: string }): VolumeRoute {
  return { orgId: v.orgId, workspaceId: v.workspaceId, volumeId: v.id };
}
