/**
 * koffi declarations of the few libbpf (libbpf.so.1, 1.1+) and libc calls twtrace uses.
 *
 * Error convention (libbpf 1.x): pointer-returning calls give NULL, int-returning calls a negative
 * error code, and both set errno; it is read with koffi.errno() immediately after the call, before
 * any other native call can overwrite it. Every function here throws `NativeError` on failure, so
 * callers never see a raw pointer or a negative number.
 */
import koffi from 'koffi';
import os from 'node:os';
import { hostU32, hostU64, lastError as failure, libc, NativeError, setHostU32 } from './libc.js';

export { NativeError };

/** The `struct bpf_object *`, `struct bpf_map *`, ... handles: opaque to everything above native/. */
export type Handle = unknown;

/** bpf_map_type values used (include/uapi/linux/bpf.h). */
export const BPF_MAP_TYPE_RINGBUF = 27;
/** offsetof(struct bpf_prog_info, recursion_misses), uapi since Linux 5.12; checked by test/native.test.ts. */
export const PROG_INFO_RECURSION_MISSES_OFFSET = 208;
export const PROG_INFO_SIZE = 232;

interface LibbpfRaw {
	bpf_object__open_file: (path: string, opts: null) => Handle;
	bpf_object__load: (obj: Handle) => number;
	bpf_object__close: (obj: Handle) => void;
	bpf_object__find_map_by_name: (obj: Handle, name: string) => Handle;
	bpf_object__find_program_by_name: (obj: Handle, name: string) => Handle;
	bpf_map__set_max_entries: (map: Handle, n: number) => number;
	bpf_map__initial_value: (map: Handle, size: Buffer) => Handle;
	bpf_map__fd: (map: Handle) => number;
	bpf_program__set_autoload: (prog: Handle, autoload: boolean) => number;
	bpf_program__attach: (prog: Handle) => Handle;
	bpf_program__fd: (prog: Handle) => number;
	bpf_link__fd: (link: Handle) => number;
	bpf_iter_create: (linkFd: number) => number;
	bpf_link__destroy: (link: Handle) => number;
	bpf_map_lookup_elem: (fd: number, key: Buffer, value: Buffer) => number;
	bpf_map_update_elem: (fd: number, key: Buffer, value: Buffer, flags: bigint) => number;
	bpf_map_delete_elem: (fd: number, key: Buffer) => number;
	bpf_map_get_next_key: (fd: number, key: Buffer | null, next: Buffer) => number;
	bpf_map_lookup_batch: BatchCall;
	bpf_map_lookup_and_delete_batch: BatchCall;
	bpf_obj_get_info_by_fd: (fd: number, info: Buffer, len: Buffer) => number;
	libbpf_num_possible_cpus: () => number;
	libbpf_probe_bpf_map_type: (type: number, opts: null) => number;
	libbpf_set_print: (fn: Handle) => Handle;
	bpf_prog_test_run_opts: (fd: number, opts: TestRunOpts) => number;
	bpf_enable_stats: (type: number) => number;
}

type BatchCall = (fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Uint32Array, opts: null) => number;

/** struct bpf_test_run_opts (bpf/bpf.h, libbpf 1.1), the fields a BPF_PROG_TYPE_SYSCALL run uses. */
interface TestRunOpts {
	sz: number;
	data_in: null;
	data_out: null;
	data_size_in: number;
	data_size_out: number;
	ctx_in: Buffer | null;
	ctx_out: null;
	ctx_size_in: number;
	ctx_size_out: number;
	retval: number;
	repeat: number;
	duration: number;
	flags: number;
	cpu: number;
	batch_size: number;
}

let libbpfCache: LibbpfRaw | undefined;
let TEST_RUN_OPTS: ReturnType<typeof koffi.struct> | undefined;

/**
 * Loads libbpf.so.1 once (the dynamic linker's search; $TWTRACE_LIBBPF names another file, for a
 * host that keeps it elsewhere). Throws NativeError('load libbpf.so.1', ENOENT) when it cannot:
 * preflight turns that into "install libbpf1".
 */
function libbpf(): LibbpfRaw {
	if (libbpfCache) return libbpfCache;
	let lib: ReturnType<typeof koffi.load>;
	TEST_RUN_OPTS ??= koffi.struct('bpf_test_run_opts', {
		sz: 'size_t', data_in: 'void *', data_out: 'void *', data_size_in: 'uint32_t', data_size_out: 'uint32_t',
		ctx_in: 'void *', ctx_out: 'void *', ctx_size_in: 'uint32_t', ctx_size_out: 'uint32_t', retval: 'uint32_t',
		repeat: 'int', duration: 'uint32_t', flags: 'uint32_t', cpu: 'uint32_t', batch_size: 'uint32_t',
	});
	try {
		lib = koffi.load(process.env.TWTRACE_LIBBPF || 'libbpf.so.1');
	} catch (cause) {
		throw Object.assign(new NativeError('load libbpf.so.1', os.constants.errno.ENOENT, String((cause as Error).message)), { cause });
	}
	libbpfCache = {
		bpf_object__open_file: lib.func('void *bpf_object__open_file(const char *path, void *opts)'),
		bpf_object__load: lib.func('int bpf_object__load(void *obj)'),
		bpf_object__close: lib.func('void bpf_object__close(void *obj)'),
		bpf_object__find_map_by_name: lib.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
		bpf_object__find_program_by_name: lib.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
		bpf_map__set_max_entries: lib.func('int bpf_map__set_max_entries(void *map, uint32_t n)'),
		bpf_map__initial_value: lib.func('void *bpf_map__initial_value(void *map, _Out_ uint8_t *psize)'),
		bpf_map__fd: lib.func('int bpf_map__fd(void *map)'),
		bpf_program__set_autoload: lib.func('int bpf_program__set_autoload(void *prog, bool autoload)'),
		bpf_program__attach: lib.func('void *bpf_program__attach(void *prog)'),
		bpf_program__fd: lib.func('int bpf_program__fd(void *prog)'),
		bpf_link__fd: lib.func('int bpf_link__fd(void *link)'),
		bpf_iter_create: lib.func('int bpf_iter_create(int link_fd)'),
		bpf_link__destroy: lib.func('int bpf_link__destroy(void *link)'),
		bpf_map_lookup_elem: lib.func('int bpf_map_lookup_elem(int fd, const uint8_t *key, _Out_ uint8_t *value)'),
		bpf_map_update_elem: lib.func('int bpf_map_update_elem(int fd, const uint8_t *key, const uint8_t *value, uint64_t flags)'),
		bpf_map_delete_elem: lib.func('int bpf_map_delete_elem(int fd, const uint8_t *key)'),
		bpf_map_get_next_key: lib.func('int bpf_map_get_next_key(int fd, const uint8_t *key, _Out_ uint8_t *next)'),
		bpf_map_lookup_batch: lib.func('int bpf_map_lookup_batch(int fd, uint8_t *in_batch, _Out_ uint8_t *out_batch, _Out_ uint8_t *keys, _Out_ uint8_t *values, _Inout_ uint32_t *count, void *opts)'),
		bpf_map_lookup_and_delete_batch: lib.func('int bpf_map_lookup_and_delete_batch(int fd, uint8_t *in_batch, _Out_ uint8_t *out_batch, _Out_ uint8_t *keys, _Out_ uint8_t *values, _Inout_ uint32_t *count, void *opts)'),
		bpf_obj_get_info_by_fd: lib.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint8_t *len)'),
		libbpf_num_possible_cpus: lib.func('int libbpf_num_possible_cpus()'),
		libbpf_probe_bpf_map_type: lib.func('int libbpf_probe_bpf_map_type(int type, void *opts)'),
		libbpf_set_print: lib.func('void *libbpf_set_print(void *fn)'),
		bpf_prog_test_run_opts: lib.func('int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)'),
		bpf_enable_stats: lib.func('int bpf_enable_stats(int type)'),
	};
	return libbpfCache;
}

function isNull(p: Handle): boolean {
	return p === null || koffi.address(p) === 0n;
}

// ---- libbpf's own log ------------------------------------------------------------------------

const LOG_LINES_KEPT = 200;
const logLines: string[] = [];
let logSink: ((line: string) => void) | undefined;
let printCallback: Handle | undefined;

/**
 * Routes libbpf's messages (verifier log included) into a bounded buffer, and to `sink` when given
 * (--verbose). Without this, libbpf writes to stderr on its own.
 */
export function captureLibbpfLog(sink?: (line: string) => void): void {
	logSink = sink;
	if (printCallback) return;
	const proto = koffi.proto('int twt_libbpf_print_fn(int level, void *fmt, void *ap)');
	const buf = Buffer.alloc(4096);
	printCallback = koffi.register((_level: number, fmt: Handle, ap: Handle) => {
		// va_list is an array type on x86_64, so it arrives (and is passed on) as a pointer.
		const n = libc().vsnprintf(buf, buf.length, fmt, ap);
		const text = buf.subarray(0, Math.max(0, Math.min(n, buf.length - 1))).toString('utf8');
		for (const line of text.split('\n')) {
			if (!line) continue;
			logLines.push(line);
			if (logLines.length > LOG_LINES_KEPT) logLines.shift();
			logSink?.(line);
		}
		return 0;
	}, koffi.pointer(proto));
	libbpf().libbpf_set_print(printCallback);
}

/** The last lines libbpf logged (oldest first), for error reports. */
export function libbpfLog(): readonly string[] {
	return logLines;
}

// ---- typed wrappers ---------------------------------------------------------------------------

/** Throws NativeError when libbpf.so.1 cannot be loaded. */
export function ensureLibbpf(): void {
	libbpf();
}

export function objectOpen(path: string): Handle {
	const obj = libbpf().bpf_object__open_file(path, null);
	if (isNull(obj)) throw failure(`open ${path}`);
	return obj;
}

export function objectLoad(obj: Handle): void {
	const ret = libbpf().bpf_object__load(obj);
	if (ret < 0) throw failure('load BPF object', ret);
}

/** Frees the object and everything libbpf allocated for it (maps and programs close). Idempotent per handle is the caller's job. */
export function objectClose(obj: Handle): void {
	libbpf().bpf_object__close(obj);
}

export function findMap(obj: Handle, name: string): Handle {
	const map = libbpf().bpf_object__find_map_by_name(obj, name);
	if (isNull(map)) throw failure(`find map ${name}`);
	return map;
}

export function findProgram(obj: Handle, name: string): Handle {
	const prog = libbpf().bpf_object__find_program_by_name(obj, name);
	if (isNull(prog)) throw failure(`find program ${name}`);
	return prog;
}

export function mapSetMaxEntries(map: Handle, n: number): void {
	const ret = libbpf().bpf_map__set_max_entries(map, n);
	if (ret < 0) throw failure('set max_entries', ret);
}

/**
 * Copies `bytes` over the start of a global-data map's initial value (.rodata), between open and
 * load. Throws when the map is smaller than `bytes`.
 */
export function mapWriteInitialValue(map: Handle, offset: number, bytes: Uint8Array): void {
	const sizeBuf = Buffer.alloc(8);
	const ptr = libbpf().bpf_map__initial_value(map, sizeBuf);
	if (isNull(ptr)) throw failure('get .rodata initial value');
	const size = Number(hostU64(sizeBuf));
	if (offset + bytes.length > size) {
		throw new NativeError('write .rodata', os.constants.errno.EINVAL, `${offset + bytes.length} bytes into ${size}`);
	}
	new Uint8Array(koffi.view(ptr, size)).set(bytes, offset);
}

export function mapFd(map: Handle): number {
	const fd = libbpf().bpf_map__fd(map);
	if (fd < 0) throw failure('map fd', fd);
	return fd;
}

export function programSetAutoload(prog: Handle, autoload: boolean): void {
	const ret = libbpf().bpf_program__set_autoload(prog, autoload);
	if (ret < 0) throw failure('set autoload', ret);
}

/**
 * Runs a BPF_PROG_TYPE_SYSCALL program once, here and now, with `ctx` as its context (BPF_PROG_RUN);
 * its return value. Throws NativeError when the kernel refuses the run.
 */
export function programRun(progFd: number, ctx: Buffer): number {
	const lib = libbpf();
	const opts: TestRunOpts = {
		sz: koffi.sizeof(TEST_RUN_OPTS!), data_in: null, data_out: null, data_size_in: 0, data_size_out: 0,
		ctx_in: ctx, ctx_out: null, ctx_size_in: ctx.length, ctx_size_out: 0, retval: 0, repeat: 0, duration: 0, flags: 0, cpu: 0, batch_size: 0,
	};
	const ret = lib.bpf_prog_test_run_opts(progFd, opts);
	if (ret < 0) throw failure('run program', ret);
	return opts.retval;
}

export function programFd(prog: Handle): number {
	const fd = libbpf().bpf_program__fd(prog);
	if (fd < 0) throw failure('program fd', fd);
	return fd;
}

/** Attaches by the program's section; for SEC("iter/...") each iterCreate() on the link starts one walk. */
export function programAttach(prog: Handle, what: string): Handle {
	const link = libbpf().bpf_program__attach(prog);
	if (isNull(link)) throw failure(`attach ${what}`);
	return link;
}

/**
 * A new iterator over `link`: read(2) the returned fd to EOF, then close it. Kernel iterators over
 * namespaced objects (iter/tcp) walk the network namespace of the calling thread at this moment.
 */
export function iterCreate(link: Handle): number {
	const linkFd = libbpf().bpf_link__fd(link);
	if (linkFd < 0) throw failure('iterator link fd', linkFd);
	const fd = libbpf().bpf_iter_create(linkFd);
	if (fd < 0) throw failure('create iterator', fd);
	return fd;
}

/** Looks up `key` in a (non-per-CPU) map; false when absent. */
export function mapLookup(fd: number, key: Buffer, value: Buffer): boolean {
	return libbpf().bpf_map_lookup_elem(fd, key, value) === 0;
}

/** Writes `key` → `value` (BPF_ANY). Throws NativeError on failure. */
export function mapUpdate(fd: number, key: Buffer, value: Buffer): void {
	const ret = libbpf().bpf_map_update_elem(fd, key, value, 0n);
	if (ret < 0) throw failure('update map', ret);
}

/** Deletes `key`; false when it was not there (ENOENT), or another failure. */
export function mapDelete(fd: number, key: Buffer): boolean {
	return libbpf().bpf_map_delete_elem(fd, key) === 0;
}

/**
 * The key after `key` in a hash map's order (null: the first), written into `next`; false at the end.
 * A deleted `key` restarts from the first (kernel htab_map_get_next_key), so callers bound their loop.
 */
export function mapNextKey(fd: number, key: Buffer | null, next: Buffer): boolean {
	return libbpf().bpf_map_get_next_key(fd, key, next) === 0;
}

const ENOENT = 2;

/** Buffers for mapReadBatches, kept by a caller that reads the same map again and again. */
export interface BatchBuffers {
	keys: Buffer;
	values: Buffer;
}

export function batchBuffers(keySize: number, valueSize: number, batchEntries = 1024): BatchBuffers {
	return { keys: Buffer.alloc(keySize * batchEntries), values: Buffer.alloc(valueSize * batchEntries) };
}

/**
 * Reads every entry of a hash map, as many at a time as `buffers` hold, with one bpf() call per
 * batch (BPF_MAP_LOOKUP_BATCH) instead of two per key; with `clear`, deletes them as it reads
 * (BPF_MAP_LOOKUP_AND_DELETE_BATCH). Entries a program adds or deletes meanwhile may or may not be
 * seen: clear only a map no program writes any more. `visit` gets each batch packed (`n` keys of
 * `keySize` bytes, `n` values of `valueSize`), in the buffers, reused for the next. Returns the count.
 */
export function mapReadBatches(fd: number, keySize: number, valueSize: number, clear: boolean,
	visit: (keys: Buffer, values: Buffer, n: number) => void, buffers = batchBuffers(keySize, valueSize)): number {
	const call = clear ? libbpf().bpf_map_lookup_and_delete_batch : libbpf().bpf_map_lookup_batch;
	const { keys, values } = buffers;
	const batchEntries = Math.floor(keys.length / keySize);
	// The kernel's position between calls (a hash bucket index for htab): opaque, fed back as is.
	const position = Buffer.alloc(8);
	const next = Buffer.alloc(8);
	const count = new Uint32Array(1);
	let total = 0;
	for (let first = true; ; first = false) {
		count[0] = batchEntries;
		const ret = call(fd, first ? null : position, next, keys, values, count, null);
		// -ENOENT: the end, with the last entries (maybe none) in the buffers.
		if (ret < 0 && ret !== -ENOENT) throw failure(clear ? 'read and clear map' : 'read map', ret);
		if (count[0]! > 0) visit(keys, values, count[0]!);
		total += count[0]!;
		if (ret < 0) return total;
		next.copy(position);
	}
}

/** BPF_STATS_RUN_TIME in enum bpf_stats_type (include/uapi/linux/bpf.h). */
const BPF_STATS_RUN_TIME = 0;

/**
 * Has the kernel time every BPF program's runs (run_time_ns and run_cnt in bpf_prog_info, which
 * bpftool shows) while the returned fd stays open; close it to stop. Host-wide and not free (two
 * clock reads a run): the benchmark's run-timed modes only.
 */
export function enableRunTimeStats(): number {
	const fd = libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (fd < 0) throw failure('enable BPF run-time stats', fd);
	return fd;
}

export function linkDestroy(link: Handle): void {
	libbpf().bpf_link__destroy(link);
}

/** Number of possible CPUs: the per-CPU value count of a PERCPU map. */
export function possibleCpus(): number {
	const n = libbpf().libbpf_num_possible_cpus();
	if (n <= 0) throw failure('count possible CPUs', n);
	return n;
}

/** Reads a per-CPU u64 array element and returns the sum over CPUs. */
export function perCpuSum(fd: number, index: number, cpus: number): bigint {
	const key = Buffer.alloc(4);
	setHostU32(key, index);
	const value = Buffer.alloc(8 * cpus);
	const ret = libbpf().bpf_map_lookup_elem(fd, key, value);
	if (ret < 0) throw failure('read counters', ret);
	let sum = 0n;
	for (let cpu = 0; cpu < cpus; cpu++) sum += hostU64(value, cpu * 8);
	return sum;
}

/** How often the kernel skipped this program because it was already running on that CPU. */
export function programRecursionMisses(progFd: number): bigint {
	const info = Buffer.alloc(PROG_INFO_SIZE);
	const len = Buffer.alloc(4);
	setHostU32(len, PROG_INFO_SIZE);
	const ret = libbpf().bpf_obj_get_info_by_fd(progFd, info, len);
	if (ret < 0) throw failure('read program info', ret);
	return hostU32(len) > PROG_INFO_RECURSION_MISSES_OFFSET ? hostU64(info, PROG_INFO_RECURSION_MISSES_OFFSET) : 0n;
}

/** 1 supported, 0 not, negative errno when the probe itself failed. */
export function probeMapType(type: number): number {
	return libbpf().libbpf_probe_bpf_map_type(type, null);
}
