// The built package (npm run build) loads from ESM and from CommonJS, main and react entries.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

it('dist is importable from ESM and CJS, with type declarations', () => {
  for (const f of ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts', 'react.js', 'react.cjs', 'react.d.ts']) {
    expect(existsSync(join(root, 'dist', f)), `dist/${f} (run npm run build)`).toBe(true);
  }
  // Through the package's own name and `exports`, as a consumer would (self-reference).
  const esm = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `import { PulsewireClient, PulsewireError, backoffCap } from '@pulsewire/client'; import * as r from '@pulsewire/client/react'; console.log(typeof PulsewireClient, typeof PulsewireError, backoffCap(2, {minReconnectDelay: 1, maxReconnectDelay: 10}), typeof r.useSeries)`],
    { cwd: root, encoding: 'utf8' },
  );
  expect(esm.trim()).toBe('function function 4 function');
  const cjs = execFileSync(
    process.execPath,
    ['-e', `const { PulsewireClient } = require('@pulsewire/client'); const r = require('@pulsewire/client/react'); const c = new PulsewireClient({ url: 'http://127.0.0.1:1', autoConnect: false }); console.log(c.state, typeof r.useChannel)`],
    { cwd: root, encoding: 'utf8' },
  );
  expect(cjs.trim()).toBe('disconnected function');
});
