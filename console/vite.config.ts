import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The web console (issue 17): `npm run build` bundles it into dist/console, which the gateway serves at
// /console (src/http/console.ts). Everything is bundled: nothing is fetched from a CDN at run time.
// `npm run console:dev` serves it with hot reload against a gateway on GATEWAY_URL (default :4000).
const gateway = process.env.GATEWAY_URL ?? 'http://127.0.0.1:4000';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  // Vite 8 transforms JSX with oxc: the automatic runtime from Preact, no React preset needed.
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: { proxy: { '/graphql': { target: gateway, ws: true, changeOrigin: true } } },
});
