/**
 * The two builds a bench:ab run compares (bench/ab.ts, bench/ab-bpf.ts): this checkout and another
 * one the user built, each with its CLI and commit.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { root } from './tracers.js';

export interface Checkout {
	name: 'this checkout' | 'base';
	dir: string;
	/** dist/src/cli.js of its build. */
	cli: string;
	/** Its HEAD, short; or why there is none. */
	commit: string;
}

/** This checkout and the one in `baseDir`; exits with a message naming the fix when either is not built. */
export function checkouts(script: string, baseDir: string): [Checkout, Checkout] {
	const [mine, base] = ([['this checkout', root], ['base', path.resolve(baseDir)]] as const).map(([name, dir]) => {
		const cli = path.join(dir, 'dist/src/cli.js');
		if (!fs.existsSync(cli)) fail(`${script}: ${cli} is not built. Run scripts/setup (or make) in ${dir}`, 1);
		return { name, dir, cli, commit: commitOf(dir) };
	});
	return [mine!, base!];
}

function commitOf(dir: string): string {
	try {
		return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
	} catch {
		return 'not a git checkout';
	}
}

/** Prints `message` and exits with `code`. */
export function fail(message: string, code: number): never {
	console.error(message);
	process.exit(code);
}
