// Imports every schema module for its side effects (type registration), then builds the schema.
import { builder } from '../builder.js';
import './viewer.js';
import './workspace.js';
import './volume.js';
import './volume-listing.js';
import './volume-sharing.js';
import './mount.js';
import './api-key.js';
import './entry.js';
import './entry-mutations.js';
import './entry-events.js';
import './lock.js';
import './search.js';
import './reindex.js';
import './backup.js';
import './upload.js';

export const schema = builder.toSchema({ sortSchema: true });
