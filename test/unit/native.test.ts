import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROG_INFO_RECURSION_MISSES_OFFSET, PROG_INFO_SIZE } from '../../native/libbpf.js';

// The uapi struct is append-only; compile a probe against the installed headers to check our copy.
const header = '/usr/include/linux/bpf.h';
const haveCc = (() => {
	try {
		execFileSync('cc', ['--version'], { stdio: 'ignore' });
		return fs.existsSync(header);
	} catch {
		return false;
	}
})();

(haveCc ? test : test.skip)('bpf_prog_info offsets match the installed uapi header', (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'twt-uapi-'));
	t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
	fs.writeFileSync(path.join(dir, 'p.c'), '#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\nint main(void){printf("%zu %zu", offsetof(struct bpf_prog_info, recursion_misses), sizeof(struct bpf_prog_info));return 0;}\n');
	execFileSync('cc', ['-o', path.join(dir, 'p'), path.join(dir, 'p.c')]);
	const [offset, size] = execFileSync(path.join(dir, 'p'), { encoding: 'utf8' }).split(' ').map(Number);
	t.is(offset, PROG_INFO_RECURSION_MISSES_OFFSET);
	t.true(size! >= PROG_INFO_SIZE);
});
