// Import rules of src/ (docs/ARCHITECTURE.md): transports -> domain concept folders -> domain/shared
// and domain/access -> db, storage, indexing, jobs. No cycles at all, type-only imports included.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'A cycle, even of types only, means two modules cannot be read (or changed) apart.',
      from: { path: '^src' },
      to: { circular: true },
    },
    {
      name: 'lower-layers-stay-low',
      severity: 'error',
      comment: 'db, storage, indexing, jobs, http (transport plumbing) and telemetry know nothing of the domain or the transports.',
      from: { path: '^src/(db|storage|indexing|jobs|http|telemetry)/' },
      to: { path: '^src/(domain|graphql|rest|app|runtime|main)' },
    },
    {
      name: 'domain-knows-no-transport',
      severity: 'error',
      comment: 'Business rules are written once, below GraphQL and REST, which are thin over them.',
      from: { path: '^src/domain/' },
      to: { path: '^src/(graphql|rest|app|runtime|main)' },
    },
    {
      name: 'shared-kernel-is-shared',
      severity: 'error',
      comment: 'domain/shared is the kernel every concept uses; it depends on no concept.',
      from: { path: '^src/domain/shared/' },
      to: { path: '^src/domain/(?!shared/)' },
    },
    {
      name: 'access-below-concepts',
      severity: 'error',
      comment: 'Who may see what is decided below the concepts (workspaces, volumes, entries…), never by them.',
      from: { path: '^src/domain/access/' },
      to: { path: '^src/domain/(?!shared/|access/)' },
    },
    {
      name: 'transports-apart',
      severity: 'error',
      comment: 'GraphQL and REST are two transports over one domain; neither builds on the other.',
      from: { path: '^src/(graphql|rest)/' },
      to: { path: '^src/(graphql|rest)/', pathNot: '^src/$1/' },
    },
    {
      name: 'no-dev-dependencies-at-run-time',
      severity: 'error',
      comment: 'The gateway runs from dist/ after `npm ci --omit=dev`: src imports only dependencies (type-only imports are erased).',
      from: { path: '^src' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-test-code-in-src',
      severity: 'error',
      from: { path: '^src' },
      to: { path: '^(test|bench|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/generated/' },
    // Type-only imports count: a cycle of types is still a cycle.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
