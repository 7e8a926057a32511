/**
 * The consumer end of a streaming tracer in the benchmark: what an engineer pipes a tracer into
 * during an incident. Counts lines, tallies TIME_WAIT entries by the pid each line names, and notes
 * the tracer's own loss reports. Prints one JSON line when its input ends.
 *
 *   twtrace trace --json --kind time_wait | node --import tsx bench/line-counter.ts
 *   bpftrace -e '…printf("%d %s %d %d\n", pid, comm, args->oldstate, args->newstate)' | … line-counter.ts
 *
 * It prints {"ready":true} on stdout at its first input line, so the harness knows the tracer runs.
 */
const TCP_FIN_WAIT2 = 5;
const TCP_CLOSE = 7;
const TCP_CLOSING = 11;

export interface CounterResult {
	lines: number;
	/** TIME_WAIT entries per pid, as each tracer attributes them. */
	timeWaitByPid: Record<string, number>;
	/** Events the tracer said it lost ("Lost N events", bpftrace). */
	lost: number;
}

/** Tallies one line of either tracer's output. Exported for the unit test of the bench's parsing. */
export function countLine(line: string, r: CounterResult): void {
	r.lines++;
	if (line.startsWith('{')) {
		// twtrace --json: {"kind":"time_wait","ts":…,"pid":N,…}
		if (line.startsWith('{"kind":"time_wait"')) {
			const pid = /"pid":(\d+)/.exec(line)?.[1];
			if (pid) r.timeWaitByPid[pid] = (r.timeWaitByPid[pid] ?? 0) + 1;
		}
		return;
	}
	const lost = /^Lost (\d+) events/.exec(line);
	if (lost) {
		r.lost += Number(lost[1]);
		return;
	}
	// bpftrace: "PID COMM OLDSTATE NEWSTATE"; a TIME_WAIT entry is FIN_WAIT2|CLOSING -> CLOSE
	// (kernel-facts §1.3: no tracepoint reports newstate TIME_WAIT). comm may contain spaces.
	const f = line.split(' ');
	if (f.length < 4) return;
	const oldState = Number(f[f.length - 2]);
	const newState = Number(f[f.length - 1]);
	if (newState === TCP_CLOSE && (oldState === TCP_FIN_WAIT2 || oldState === TCP_CLOSING)) {
		r.timeWaitByPid[f[0]!] = (r.timeWaitByPid[f[0]!] ?? 0) + 1;
	}
}

async function main(): Promise<void> {
	const result: CounterResult = { lines: 0, timeWaitByPid: {}, lost: 0 };
	let rest = '';
	let ready = false;
	process.stdin.setEncoding('utf8');
	for await (const chunk of process.stdin as AsyncIterable<string>) {
		if (!ready) {
			process.stdout.write('{"ready":true}\n');
			ready = true;
		}
		const lines = (rest + chunk).split('\n');
		rest = lines.pop()!;
		for (const line of lines) countLine(line, result);
	}
	if (rest) countLine(rest, result);
	process.stdout.write(JSON.stringify(result) + '\n');
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
