/**
 * The README's picture of `report --format html`: the report of a capture opened in Debian's chromium
 * (headless, testbed/browser.ts), its first screen saved as a PNG.
 *
 *   node --import tsx scripts/screenshot-report.ts [CAPTURE OUT.png [REPORT OPTION…]]
 *
 * Defaults: docs/pool-fills.twtcap (`scripts/make-fixtures pool-fills` records it), docs/report-html.png,
 * `--by comm`. Needs `make ts` and chromium (scripts/setup --tests).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPage } from '../testbed/browser.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const capture = process.argv[2] ?? path.join(root, 'docs/pool-fills.twtcap');
const out = process.argv[3] ?? path.join(root, 'docs/report-html.png');
const options = process.argv.length > 4 ? process.argv.slice(4) : ['--by', 'comm'];

const html = execFileSync(process.execPath, [path.join(root, 'dist/src/cli.js'), 'report', capture, '--format', 'html', ...options], { encoding: 'utf8', maxBuffer: 64 << 20 });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-shot-'));
try {
	const file = path.join(dir, 'report.html');
	fs.writeFileSync(file, html);
	const opened = await openPage(file, { width: 1200, height: 1500 });
	try {
		await opened.page.waitForFunction('window.twtracePlots !== undefined', { timeout: 20_000 });
		if (opened.errors.length || opened.fetches.length) throw new Error(`the page logged errors or fetched: ${[...opened.errors, ...opened.fetches].join('; ')}`);
		await opened.page.screenshot({ path: out as `${string}.png`, clip: { x: 0, y: 0, width: 1200, height: 1500 } });
	} finally {
		await opened.close();
	}
	console.error(`screenshot-report: wrote ${path.relative(process.cwd(), out)}`);
} finally {
	fs.rmSync(dir, { recursive: true, force: true });
}
