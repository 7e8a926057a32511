/**
 * Opens a local HTML file in Debian's chromium, headless, driven by puppeteer-core over the DevTools
 * protocol: the console's errors and the page's exceptions are collected, and every request other
 * than the file itself is refused and recorded (a self-contained page makes none). Used by
 * test/integration/report-html.test.ts and scripts/screenshot-report.ts.
 */
import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROMIUM = '/usr/bin/chromium';

export interface OpenedPage {
	page: Page;
	/** Console errors and uncaught exceptions, in order. */
	errors: string[];
	/** URLs the page tried to fetch (refused). */
	fetches: string[];
	close(): Promise<void>;
}

export async function openPage(file: string, viewport = { width: 1280, height: 900 }): Promise<OpenedPage> {
	const browser: Browser = await puppeteer.launch({
		executablePath: CHROMIUM,
		headless: true,
		// As root (CI) chromium needs --no-sandbox; the page is our own file, with no network.
		args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
	});
	try {
		const page = await browser.newPage();
		await page.setViewport(viewport);
		const errors: string[] = [];
		const fetches: string[] = [];
		const own = pathToFileURL(file).href;
		page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
		page.on('pageerror', (e) => void errors.push(String(e)));
		await page.setRequestInterception(true);
		page.on('request', (r) => {
			if (r.url() === own) return void r.continue();
			fetches.push(r.url());
			void r.abort();
		});
		await page.goto(own, { waitUntil: 'load' });
		return { page, errors, fetches, close: () => browser.close() };
	} catch (error) {
		await browser.close();
		throw error;
	}
}
