// Builds the dashboard into the server crate's assets, which the binary embeds at compile time
// (crates/server/src/dashboard.rs). File names carry a content hash, so the server can mark
// them immutable; index.html is the only file served without one.
//
// The live connection is the `@pulsewire/client` SDK, compiled from its sources in clients/js
// (no separate build of the SDK, no link in node_modules): the alias below points the import at
// them, and scripts/stamp.mjs counts them among the sources the build output is checked against.
// Their one dependency, eventsource-parser, is resolved from dashboard/node_modules (pinned in
// this package-lock.json), whether or not clients/js has node_modules of its own.
import { defineConfig } from 'vite';

const sdk = decodeURIComponent(new URL('../clients/js/src/index.ts', import.meta.url).pathname);

export default defineConfig({
  root: '.',
  base: '/',
  resolve: {
    alias: { '@pulsewire/client': sdk },
    dedupe: ['eventsource-parser'],
  },
  build: {
    outDir: '../crates/server/assets/dashboard',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    // The SDK's sources live outside this folder.
    fs: { allow: ['.', '../clients/js/src'] },
    // `npm run dev` against a node on the default address.
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/metrics': 'http://127.0.0.1:8080',
      '/write': 'http://127.0.0.1:8080',
      '/ready': 'http://127.0.0.1:8080',
      '/sse': 'http://127.0.0.1:8080',
      '/ws': { target: 'ws://127.0.0.1:8080', ws: true },
    },
  },
});
