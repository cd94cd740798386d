import type { Principal } from '../access/principal.js';
import { type AppError, ConflictError, type FieldIssue, QuotaExceededError, ValidationError } from '../shared/errors.js';
import type { WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { authorizeVolumeCreation, checkNewVolume } from './volumes.js';

export interface VolumeValidation {
  valid: boolean;
  /** The 422 items a create would answer, or the conflict (duplicate name, quota) as one such item. */
  errors: FieldIssue[];
}

/** A refusal of the current state (409/507) as a validation item, located at the field it names. */
function issueOf(err: AppError, loc: (string | number)[]): FieldIssue {
  const { field, value, ...ctx } = err.details;
  return {
    loc: typeof field === 'string' ? [...loc, field] : loc,
    msg: err.message,
    type: err.code.toLowerCase(),
    input: value ?? null,
    ctx,
  };
}

/**
 * Dry run of `createVolume`: the same authorisation, schema and checks against existing volumes
 * (`checkNewVolume`), and nothing written. What the caller may not do at all is still an error
 * (401/403/404); what is wrong with the body is the answer. `body` is read only once the caller is
 * authorised, and a ValidationError it throws (malformed JSON) is part of the answer too.
 * @throws ForbiddenError, NotFoundError
 */
export async function validateVolume(
  rt: Runtime,
  p: Principal,
  route: WorkspaceRoute,
  body: () => unknown,
  loc: (string | number)[] = ['body'],
): Promise<VolumeValidation> {
  const { orgId, workspaceId } = route;
  await authorizeVolumeCreation(rt, p, { orgId, workspaceId });
  try {
    await checkNewVolume(rt, workspaceId, body(), loc);
    return { valid: true, errors: [] };
  } catch (err) {
    if (err instanceof ValidationError) return { valid: false, errors: err.issues };
    if (err instanceof ConflictError || err instanceof QuotaExceededError) return { valid: false, errors: [issueOf(err, loc)] };
    throw err;
  }
}
