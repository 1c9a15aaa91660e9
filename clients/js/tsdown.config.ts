import { defineConfig } from 'tsdown';

export default defineConfig({
  entry: { index: 'src/index.ts', react: 'src/react/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  platform: 'neutral',
  target: 'es2022',
  clean: true,
  sourcemap: true,
  // Peer and runtime dependencies stay imports; nothing is bundled but our own code.
  external: ['react', 'ws', 'eventsource-parser'],
});
