import fs from 'node:fs';
import path from 'node:path';

let root: string | undefined;

/** The folder holding Mailward's package.json, from the sources (tsx) or the build (dist/src/...) alike; assets ship there. */
export const packageRoot = (): string => {
  if (root) return root;
  let dir = import.meta.dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found above the sources');
    dir = up;
  }
  root = dir;
  return dir;
};
