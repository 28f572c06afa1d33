import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../kernel/log.js';
import { loadConfig } from './config.js';
import { createContainer } from './container.js';
import { buildServer } from './http-server.js';

/**
 * The OpenAPI document exactly as `GET /openapi.json` serves it, built from a throwaway
 * SQLite store in a temp dir (nothing is listening, nothing of a real data dir is read).
 * The SDK generator and `mailward openapi` use it, so the committed SDK matches the routes.
 */
export const buildOpenApiDocument = async (): Promise<Record<string, unknown>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mw-openapi-'));
  try {
    const config = loadConfig({
      MAILWARD_DATA_DIR: dir,
      MAILWARD_LOG_LEVEL: 'silent',
      MAILWARD_SIGNING_THREADS: '0',
      MAILWARD_INBOUND_THREADS: '0',
    });
    const c = await createContainer(config, { createMasterKey: true, logger: createLogger({ level: 'silent' }) });
    try {
      const app = await buildServer(c);
      await app.ready();
      const doc = app.swagger() as unknown as Record<string, unknown>;
      await app.close();
      return JSON.parse(JSON.stringify(doc)) as Record<string, unknown>;
    } finally {
      await c.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
};
