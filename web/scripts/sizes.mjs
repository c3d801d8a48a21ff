// Prints each built file's size and gzipped size (what a browser downloads), per app.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../dist', import.meta.url));
const files = (dir) =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
for (const app of ['console', 'widget']) {
  let raw = 0;
  let gz = 0;
  console.log(`dist/${app}/`);
  for (const f of files(join(dist, app)).sort()) {
    const b = readFileSync(f);
    const z = gzipSync(b, { level: 9 }).length;
    raw += b.length;
    gz += z;
    console.log(`  ${relative(join(dist, app), f).padEnd(40)} ${kb(b.length).padStart(10)}  gzip ${kb(z).padStart(9)}`);
  }
  console.log(`  ${'total'.padEnd(40)} ${kb(raw).padStart(10)}  gzip ${kb(gz).padStart(9)}`);
}
