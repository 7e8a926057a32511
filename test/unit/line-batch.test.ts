import test from 'ava';
import { LineBatch } from '../../src/views/line-batch.js';

test('lines come out as UTF-8, one per line, and the batch starts afresh', (t) => {
	const b = new LineBatch();
	t.is(b.take(), undefined);
	b.add('{"comm":"nginx"}');
	b.add('{"cgroup":"/système/ünit ✓ 𝄞"}');
	t.is(b.lines, 2);
	t.is(b.take()!.toString('utf8'), '{"comm":"nginx"}\n{"cgroup":"/système/ünit ✓ 𝄞"}\n');
	t.is(b.lines, 0);
	t.is(b.take(), undefined);
});

test('a batch larger than the scratch buffer grows it and keeps every byte', (t) => {
	const b = new LineBatch();
	const lines = Array.from({ length: 3000 }, (_, i) => `${i}:` + 'é'.repeat(i % 200));
	for (const l of lines) b.add(l);
	t.is(b.take()!.toString('utf8'), lines.join('\n') + '\n');
});

test('what take() returned is not overwritten by the next batch (a pipe write may still hold it)', (t) => {
	const b = new LineBatch();
	b.add('first');
	const first = b.take()!;
	b.add('second');
	b.take();
	t.is(first.toString(), 'first\n');
});
