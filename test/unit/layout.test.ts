/**
 * src/event/layout.generated.ts must be what scripts/gen-layout.ts makes from the built BPF object
 * today: a field changed in bpf/twtrace.h without `make layout` fails here.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dumpBtf, generateLayout } from '../../scripts/gen-layout.js';
import { bpfObject, root } from '../helpers/env.js';

function missingTool(): string | undefined {
	if (!fs.existsSync(bpfObject)) return `${path.relative(root, bpfObject)} not built (run scripts/setup)`;
	try {
		execFileSync('bpftool', ['version'], { stdio: 'ignore' });
	} catch {
		return 'bpftool not installed';
	}
	return undefined;
}

const reason = missingTool();
const title = 'decoder and config layouts are regenerated from the BPF object without drift';

if (!reason) {
	test(title, (t) => {
		const checkedIn = fs.readFileSync(path.join(root, 'src/event/layout.generated.ts'), 'utf8');
		t.is(generateLayout(dumpBtf(bpfObject)), checkedIn, 'run `make layout` and commit the result');
	});
} else if (process.env.CI === 'true') {
	test(title, (t) => t.fail(`cannot check layout drift in CI: ${reason}`));
} else {
	test.skip(`${title} [skipped: ${reason}]`, () => {});
}
