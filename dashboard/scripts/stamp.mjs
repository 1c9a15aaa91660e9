// Records a hash of the dashboard's sources beside the build output, so that a Rust test
// (crates/server/tests/it/dashboard.rs) can tell, without npm, whether the committed build
// is that of the committed sources. The same algorithm is implemented there: SHA-256 over,
// for each file in byte order of its path (relative to dashboard/), the path, a NUL, the
// content, a NUL. The sources include those of the @pulsewire/client SDK that the bundle
// compiles (clients/js/src, less its React hooks, which the dashboard does not import).
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const SOURCES = [
  'index.html',
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'vite.config.ts',
  'src',
  'public',
  '../clients/js/src',
];
/** Folders under SOURCES that the bundle never includes. */
export const EXCLUDED = ['../clients/js/src/react'];

function walk(path, out) {
  if (EXCLUDED.includes(relative(root, path).split('\\').join('/'))) return;
  let st;
  try {
    st = statSync(path);
  } catch {
    return;
  }
  if (st.isDirectory()) {
    for (const name of readdirSync(path)) walk(join(path, name), out);
  } else {
    out.push(relative(root, path).split('\\').join('/'));
  }
}

export function sourceHash() {
  const files = [];
  for (const s of SOURCES) walk(join(root, s), files);
  files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const h = createHash('sha256');
  for (const f of files) {
    h.update(f);
    h.update('\0');
    h.update(readFileSync(join(root, f)));
    h.update('\0');
  }
  return h.digest('hex');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = join(root, '../crates/server/assets/dashboard/SOURCE_HASH');
  writeFileSync(out, sourceHash() + '\n');
  console.log(`source hash written to ${relative(process.cwd(), out)}`);
}
