/**
 * `report --format html` in a real browser: the report of a recorded exhaustion (the fixture the
 * golden text reports come from) opened by Debian's chromium, headless. The page fetches nothing,
 * logs no error, opens with the same summary as the table, and each plot drew its series with
 * values: TIME_WAIT held by the offenders, ports in use against usable ports with the moment they
 * ran out marked, and the victims' failures.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHROMIUM, openPage } from '../../testbed/browser.js';
import { root, toolTest } from '../helpers/env.js';
import { runTwtrace } from '../helpers/processes.js';

const fixture = path.join(root, 'test/fixtures/captures/exhaustion.twtcap');

interface Drawn { series: number; points: number; values: number[] }

toolTest([CHROMIUM], 'report --format html: one self-contained page that a browser opens without errors, with every plot drawn', async (t) => {
	t.timeout(90_000);
	const html = await runTwtrace(['report', fixture, '--format', 'html']);
	t.is(html.code, 0, html.stderr);
	const table = await runTwtrace(['report', fixture]);
	const summary = table.stdout.split('\n')[2]!; // the table's summary line: after the heading and a blank line
	t.regex(summary, /^twtrace: .* made \d+ % of/);

	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-html-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	const file = path.join(dir, 'incident.html');
	fs.writeFileSync(file, html.stdout);
	t.notRegex(html.stdout, /<script[^>]+src=|<link[^>]+href=|@import/i, 'no external script, stylesheet or import');

	const opened = await openPage(file);
	try {
		const { page } = opened;
		await page.waitForFunction('window.twtracePlots !== undefined', { timeout: 20_000 });
		const drawn = await page.evaluate('window.twtracePlots') as Record<string, Drawn>;
		const canvases = await page.evaluate('document.querySelectorAll(".uplot canvas").length') as number;
		const shownSummary = await page.evaluate('document.querySelector(".summary").textContent') as string;
		const firstHeading = await page.evaluate('document.querySelector("h2").textContent') as string;
		t.deepEqual(opened.errors, [], 'console errors');
		t.deepEqual(opened.fetches, [], 'network fetches');
		t.is(shownSummary, summary, 'the same summary as the table');
		t.is(firstHeading, 'Remediation', 'the advice comes first, as in the table');
		t.is(canvases, 3, 'three plots drawn');
		for (const id of ['plot-held', 'plot-ports', 'plot-failures']) {
			const d = drawn[id];
			t.truthy(d, `${id} drawn`);
			t.true(d!.series > 0 && d!.points > 1, `${id}: ${JSON.stringify(d)}`);
			t.true(d!.values.every((n) => n > 0), `${id}: every series has values (${JSON.stringify(d)})`);
		}
		// Ports plot: in use and usable per destination; the exhaustion the capture recorded is marked.
		const timeline = JSON.parse(await page.evaluate('document.getElementById("twtrace-timeline").textContent') as string) as { destinations: { exhaustedAtMs: number | null }[] };
		t.is(drawn['plot-ports']!.series, 2 * timeline.destinations.length);
		t.true(timeline.destinations.some((d) => d.exhaustedAtMs !== null), 'the moment the ports ran out');
	} finally {
		await opened.close();
	}
});

