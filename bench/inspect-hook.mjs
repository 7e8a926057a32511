// Loaded into a twtrace command by the bench (`node --import bench/inspect-hook.mjs dist/src/cli.js …`).
//
// BENCH_CPU_PROFILE (bench/profile.ts): samples the main thread with V8's CPU profiler for
// BENCH_CPU_PROFILE_MS, starting BENCH_CPU_PROFILE_AFTER_MS after start, and writes the profile to that
// file (JSON, .cpuprofile). Started late on purpose: the profiler running while libbpf loads the
// programs made the load fail (EAGAIN); the commands load them in their first second.
//
// BENCH_MEMORY (bench/steady.ts): writes process.memoryUsage() to that file every second, so that the
// bench can tell the RSS it reads from /proc apart (V8's heap, array buffers, the rest). No profiler.
//
// BENCH_ALLOCATIONS (bench/heap.ts --allocations): V8's sampling heap profiler for BENCH_ALLOCATIONS_MS,
// starting BENCH_ALLOCATIONS_AFTER_MS after start, counting the objects the garbage collector has
// taken too (what a process allocates, not what it keeps: the garbage that makes V8 grow its heap);
// the profile goes to that file (JSON).
import fs from 'node:fs';
import inspector from 'node:inspector/promises';

const out = process.env.BENCH_CPU_PROFILE;
if (out) {
	const afterMs = Number(process.env.BENCH_CPU_PROFILE_AFTER_MS ?? 5000);
	const forMs = Number(process.env.BENCH_CPU_PROFILE_MS ?? 20000);
	const session = new inspector.Session();
	session.connect();
	setTimeout(async () => {
		await session.post('Profiler.enable');
		await session.post('Profiler.setSamplingInterval', { interval: 1000 }); // µs
		await session.post('Profiler.start');
		const cpu0 = process.cpuUsage();
		setTimeout(async () => {
			const { profile } = await session.post('Profiler.stop');
			// The whole process's CPU over the same window (all its threads), beside the main thread's samples.
			const cpu = process.cpuUsage(cpu0);
			fs.writeFileSync(`${out}.part`, JSON.stringify({ ...profile, processCpuUs: cpu.user + cpu.system }));
			fs.renameSync(`${out}.part`, out); // whole or absent: the bench polls for it
		}, forMs);
	}, afterMs).unref();
}

const memory = process.env.BENCH_MEMORY;
if (memory) {
	setInterval(() => {
		fs.writeFileSync(`${memory}.part`, JSON.stringify(process.memoryUsage()));
		fs.renameSync(`${memory}.part`, memory);
	}, 1000).unref();
}

const allocations = process.env.BENCH_ALLOCATIONS;
if (allocations) {
	const afterMs = Number(process.env.BENCH_ALLOCATIONS_AFTER_MS ?? 30000);
	const forMs = Number(process.env.BENCH_ALLOCATIONS_MS ?? 60000);
	const session = new inspector.Session();
	session.connect();
	setTimeout(async () => {
		await session.post('HeapProfiler.enable');
		// One sample per 4 KiB allocated on average (V8's default is 32 KiB): enough for a minute of an agent.
		await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
		setTimeout(async () => {
			const { profile } = await session.post('HeapProfiler.stopSampling');
			fs.writeFileSync(`${allocations}.part`, JSON.stringify({ ...profile, sampledMs: forMs }));
			fs.renameSync(`${allocations}.part`, allocations);
		}, forMs);
	}, afterMs).unref();
}
