import { defineConfig } from 'prisma/config';

// Prisma 7 keeps the datasource URL here. The CLI is used only for `generate` (see STACK.md: its
// migrate commands do nothing offline); migrations run through src/db/migrate.ts. The default URL
// is never connected to; it only lets `prisma generate` run without an environment.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/unused' },
});
