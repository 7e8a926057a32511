/**
 * `twtrace doctor` against a real TIME_WAIT population in a namespace pair with a 100-port range:
 * each exit code is reached by the population and the thresholds, --json is valid, and a process
 * failing with EADDRNOTAVAIL while doctor samples is shown.
 */
import { bpfTest } from '../helpers/env.js';
import { createPair } from '../../testbed/netns.js';
import { runClient, runTwtrace, startServer } from '../helpers/processes.js';

const doctor = (args: string[]) => runTwtrace(['doctor', ...args]);

bpfTest('doctor: OK, WARNING and CRITICAL from TIME_WAIT and headroom, --json, and a victim of EADDRNOTAVAIL', async (t) => {
	const pair = createPair();
	t.teardown(() => pair.remove());
	pair.sysctl(pair.client, 'net.ipv4.ip_local_port_range', '40000 40099');
	pair.sysctl(pair.client, 'net.ipv4.tcp_tw_reuse', '0');
	const server = await startServer(pair.server, '0.0.0.0', 7700, 'wait-close', 100); // 30 + 55 + 15: the whole range
	await runClient(pair.client, pair.serverAddr, 7700, 'close-first', 30);
	const ns = ['--netns', String(pair.clientInode), '--sample', '300ms'];

	// 30 TIME_WAIT, 70 % headroom.
	let r = await doctor([...ns, '--warn', '50', '--crit', '80']);
	t.is(r.code, 0, r.stdout + r.stderr);
	t.regex(r.stdout, /^TWTRACE OK - 30 TIME_WAIT in 1 namespace\(s\), worst destination 70 % headroom \| 'time_wait_\d+'=30;50;80;0;\d+ 'headroom_min'=70%;20;10;0;100\n/);
	r = await doctor([...ns, '--warn', '20', '--crit', '80']);
	t.is(r.code, 1, r.stdout);
	// The namespace by its name (/run/netns/NAME) as well as its inode.
	t.regex(r.stdout, new RegExp(`^TWTRACE WARNING - netns ${pair.clientInode} \\(${pair.client}\\): 30 TIME_WAIT \\(warn 20, crit 80`));
	r = await doctor([...ns, '--warn', '10', '--crit', '25']);
	t.is(r.code, 2, r.stdout);
	t.regex(r.stdout, /^TWTRACE CRITICAL - netns \d+ \(\w+\): 30 TIME_WAIT/);

	// 85 of 100 ports held: 15 % headroom warns even under generous TIME_WAIT thresholds.
	await runClient(pair.client, pair.serverAddr, 7700, 'close-first', 55);
	r = await doctor([...ns, '--warn', '1000', '--crit', '2000', '--json']);
	t.is(r.code, 1, r.stdout);
	const json = JSON.parse(r.stdout);
	t.is(json.status, 'WARNING');
	t.is(json.namespaces[0].timeWait, 85);
	t.like(json.destinations[0], { daddr: pair.serverAddr, dport: 7700, portsInUse: 85, portsUsable: 100 });
	t.true(json.findings.some((f: { check: string; status: string }) => f.check === 'headroom' && f.status === 'WARNING'));
	t.regex(json.line, /headroom_min'=15%/);

	// The rest of the range goes while doctor samples; the next connect() fails: CRITICAL, with the victim.
	const running = doctor([...ns.slice(0, 2), '--sample', '3s', '--warn', '1000', '--crit', '2000']);
	await new Promise((resolve) => setTimeout(resolve, 1500));
	const exhaust = await runClient(pair.client, pair.serverAddr, 7700, 'exhaust', 40);
	t.like(exhaust, { ok: 15, errno: 99 });
	r = await running;
	t.is(r.code, 2, r.stdout);
	t.regex(r.stdout, new RegExp(`tcp-scenario \\(pid ${exhaust.pid}\\) failed 1× with EADDRNOTAVAIL \\(connect to ${pair.serverAddr.replace(/\./g, '\\.')}:7700\\)`));
	t.regex(r.stdout, /100 of 100 ports in use, 0 % headroom/);
	await server.done;
});
