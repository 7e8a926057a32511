// Loaded into serve by bench/profile.ts (`node --import bench/cpu-profile-hook.mjs dist/src/cli.js serve …`):
// samples serve's main thread with V8's CPU profiler for BENCH_CPU_PROFILE_MS, starting
// BENCH_CPU_PROFILE_AFTER_MS after start, and writes the profile to BENCH_CPU_PROFILE (JSON,
// .cpuprofile). Started late on purpose: the profiler running while libbpf loads the programs
// made the load fail (EAGAIN); serve loads them in its first second.
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
		setTimeout(async () => {
			const { profile } = await session.post('Profiler.stop');
			fs.writeFileSync(`${out}.part`, JSON.stringify(profile));
			fs.renameSync(`${out}.part`, out); // whole or absent: the bench polls for it
		}, forMs);
	}, afterMs).unref();
}
