import type { FieldIssue } from '../../../domain/shared/errors.js';
import type { ClassifiedError } from '../../errors.js';
import { ORG_HEADER } from '../shared.js';

// Errors in the project dialect's style. The reference shows no error body; its bodies are flat
// camelCase objects with a `message` ({"message": "Volume is now shared", …}), so an error is one too:
// {"code": "NOT_FOUND", "message": "…", "details": {…camelCase…}}, the status saying the rest.
// Validation failures list each field as the caller named it: {field, location, message, type}.

/** Our (snake_case) field names as this dialect's callers name them. */
const FIELD_NAMES: Record<string, string> = {
  name: 'label', // the name is derived from the label
  mount_path: 'mountPath',
  volume_type: 'type',
  is_shared: 'type', // type=shared
  max_size_bytes: 'sizeGB',
  workspace_id: 'projectId',
};

/** What our domain calls a workspace is a project here. */
const RESOURCE_TYPES: Record<string, string> = { workspace: 'project' };

const camel = (key: string) => key.replace(/_([a-z0-9])/g, (_, ch: string) => ch.toUpperCase());

/** An issue's location (`body`, `query`, `path`, `header`) and field (`sizeGB`, `owner.id`), in the dialect's names. */
function fieldOf(loc: FieldIssue['loc']): { location: string; field?: string } {
  // The domain names the organisation `org_id`: here it comes from the platform key's X-Org-Id header.
  if (loc[0] === 'org_id') return { location: 'header', field: ORG_HEADER };
  const [location, ...rest] = loc;
  const path = rest.map((p) => (typeof p === 'string' ? (FIELD_NAMES[p] ?? p) : String(p)));
  return path.length > 0 ? { location: String(location), field: path.join('.') } : { location: String(location) };
}

function detailsOf(details: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(details)) {
    if (key === 'field' && typeof value === 'string') out.field = FIELD_NAMES[value] ?? value;
    else if (key === 'resource_type' && typeof value === 'string') out.resourceType = RESOURCE_TYPES[value] ?? value;
    else out[camel(key)] = value;
  }
  return out;
}

const CODES: Partial<Record<ClassifiedError['code'], string>> = { INTERNAL: 'INTERNAL_ERROR' };

export function projectErrorBody(e: ClassifiedError): { code: string; message: string; details: Record<string, unknown> } {
  const code = CODES[e.code] ?? e.code;
  if (e.issues) {
    const fields = e.issues.map((i) => ({ ...fieldOf(i.loc), message: i.msg, type: i.type }));
    const message = fields.map((f) => `${f.field ?? f.location}: ${f.message}`).join('; ');
    return { code, message, details: { fields } };
  }
  return { code, message: e.message, details: detailsOf(e.details) };
}
