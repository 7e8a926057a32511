/**
 * Writes deploy/grafana/twtrace-dashboard.json, the file people import into Grafana, from the typed
 * model in deploy/grafana/dashboard.ts (checked against Grafana's schema types by the type-check).
 *
 *   npm run dashboard            (make dashboard)
 *
 * `dashboardJson` is pure; test/unit/dashboard.test.ts uses it to detect drift.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dashboard } from '../deploy/grafana/dashboard.js';

export const DASHBOARD_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '../deploy/grafana/twtrace-dashboard.json');

export function dashboardJson(): string {
	return JSON.stringify(dashboard, null, 2) + '\n';
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) fs.writeFileSync(DASHBOARD_FILE, dashboardJson());
