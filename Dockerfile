# syntax=docker/dockerfile:1
#
# The Volumes Gateway image: `docker build -t volumes-gateway .`, then
# `docker run -p 4000:4000 -v vg-data:/app/data --hostname vg volumes-gateway` (embedded mode) or with
# DATABASE_URL, S3_* and REDIS_URL (server mode; deploy/compose.yaml runs two replicas that way).
# docs/DEPLOY.md is the guide. test/deploy.test.ts replays this file's stages outside Docker (its
# WORKDIR, COPY, ENV, RUN, CMD and HEALTHCHECK lines), so keep RUN lines to commands that work in
# any directory (relative paths) and keep ARG/variable expansion out of it.

# ---- build: every dependency, the generated Prisma client, tsc to dist/, the console to dist/console ----
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs its install scripts (@prisma/engines would download a
# native engine the gateway never uses); our own postinstall, `npm run generate`, runs below once
# the schema is here.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --prefer-offline --no-audit --no-fund
COPY prisma.config.ts tsconfig.json tsconfig.build.json ./
COPY prisma ./prisma
COPY src ./src
# The web console: Vite bundles it into dist/console, served at /console by the runtime stage.
COPY console ./console
# prisma generate writes the client to src/generated/, which tsc compiles into dist/generated/
# with the rest: dist/ is self-contained and the runtime stage needs no generator.
RUN npm run generate && npm run build
# The runtime stage's DATA_DIR, handed over owned by the unprivileged user.
RUN mkdir -p data

# ---- runtime: production dependencies, dist/, migrations; no compiler, no sources ----
FROM node:20-bookworm-slim AS runtime
# HOST 0.0.0.0: inside a container the default 127.0.0.1 would be unreachable from outside.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=4000 DATA_DIR=/app/data
WORKDIR /app
COPY package.json package-lock.json ./
# No devDependency (typescript, tsx, vitest…) in the image. --omit=dev alone would keep typescript:
# it is an optional peer of prisma and @prisma/client, so npm marks it "devOptional", which only
# --omit=dev together with --omit=optional leaves out. The optional packages of the production tree
# are not needed (a thread-priority addon piscina tries, pg-cloudflare, a types-only package).
# --ignore-scripts skips our postinstall too: the Prisma client is compiled into dist/.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional --ignore-scripts --prefer-offline --no-audit --no-fund
# The gateway applies prisma/migrations itself at start-up (src/db/migrate.ts resolves it next to dist/).
COPY prisma ./prisma
# The static embedder's table (static-use-384, 3 MB), read from models/ next to dist/.
COPY models ./models
COPY --from=build /app/dist ./dist
COPY --from=build --chown=node:node /app/data ./data
# The official image's unprivileged user (uid 1000). Everything but DATA_DIR stays root-owned, read-only to it.
USER node
EXPOSE 4000
# Ready = the database answers and no migration is pending (GET /readyz). Node itself, as slim images
# have no curl; PORT is the one the gateway listens on.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 4000) + '/readyz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
# SIGTERM (docker stop) is handled by the gateway: a graceful stop within SHUTDOWN_TIMEOUT_MS (10 s),
# so give containers a stop timeout above that (compose: stop_grace_period).
CMD ["node", "dist/main.js"]
