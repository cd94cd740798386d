import type { Volume } from '../../generated/prisma/client.js';
import { subjectNames } from '../access/api-keys.js';
import type { Runtime } from '../shared/runtime.js';

/**
 * Who owns a volume: the principal that created it (`created_by`). `id` is that subject as recorded
 * (`key:<api key id>`, or `admin` for the platform key), so it equals `created_by`; `name` is the
 * API key's name ("platform admin" for the platform key; null when the key is unknown); `email` is
 * always null: the gateway knows keys, not users.
 */
export interface VolumeOwner {
  id: string;
  name: string | null;
  email: string | null;
}

/**
 * The owners of volumes the caller has already read (through a visibility filter), in their order:
 * one query for a whole page, whatever its size. Not a permission check.
 */
export async function volumeOwners(rt: Runtime, volumes: readonly Pick<Volume, 'orgId' | 'createdBy'>[]): Promise<VolumeOwner[]> {
  const names = await subjectNames(
    rt,
    volumes.map((v) => ({ orgId: v.orgId, subject: v.createdBy })),
  );
  return volumes.map((v, i) => ({ id: v.createdBy, name: names[i] ?? null, email: null }));
}

/** The owner of one volume the caller has already read. */
export async function volumeOwner(rt: Runtime, volume: Pick<Volume, 'orgId' | 'createdBy'>): Promise<VolumeOwner> {
  const [owner] = await volumeOwners(rt, [volume]);
  return owner as VolumeOwner;
}
