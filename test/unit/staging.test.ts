/**
 * RecordStaging (src/event/staging.ts): what is taken is the consumer's to keep, a quiet take keeps
 * the staging buffer for the next records, a full one hands it over.
 */
import test from 'ava';
import { RecordStaging } from '../../src/event/staging.js';

function append(s: RecordStaging, byte: number, n: number): void {
	s.buffer.fill(byte, s.bytes, s.bytes + n);
	s.advance(n);
}

test('nothing appended: nothing taken', (t) => {
	t.is(new RecordStaging(64).take(), undefined);
});

test('a mostly empty take is a copy of its size, and the buffer is kept for the next records', (t) => {
	const s = new RecordStaging(64);
	append(s, 1, 8);
	const buffer = s.buffer;
	const first = s.take()!;
	t.deepEqual([...first], Array(8).fill(1));
	t.is(s.bytes, 0);
	append(s, 2, 8);
	t.is(s.buffer, buffer, 'the same staging buffer');
	t.deepEqual([...first], Array(8).fill(1), 'what was taken is not overwritten by later records');
	t.deepEqual([...s.take()!], Array(8).fill(2));
});

test('a full take hands the buffer over; the next records go to another', (t) => {
	const s = new RecordStaging(64);
	append(s, 3, 64);
	t.true(s.full);
	const buffer = s.buffer;
	const taken = s.take()!;
	t.is(taken.buffer, buffer.buffer, 'no copy');
	append(s, 4, 8);
	t.not(s.buffer, buffer);
	t.deepEqual([...taken], Array(64).fill(3));
	t.is(s.words.length, 16, 'the words view covers the new buffer');
});

test('a buffer handed over and given back takes the next records; one copied out, or given back twice, does not', (t) => {
	const s = new RecordStaging(64);
	append(s, 5, 64);
	const taken = s.take()!;
	s.recycle(taken);
	append(s, 6, 8);
	t.is(s.buffer.buffer, taken.buffer, 'the next records go into the buffer given back: nothing allocated');
	s.recycle(taken); // in use again: must not become the spare as well
	const second = s.take()!; // mostly empty: a copy, the buffer kept
	append(s, 7, 64);
	const full = s.take()!;
	t.is(full.buffer, taken.buffer);
	append(s, 8, 8);
	t.not(s.buffer.buffer, taken.buffer, 'given back while in use: not handed out a second time');
	s.recycle(second); // a copy of its size: not a staging buffer
	t.deepEqual([...second], Array(8).fill(6));
	t.deepEqual([...full], Array(64).fill(7));
});
