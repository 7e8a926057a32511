/**
 * Loads bench/floor.bpf.c (two empty tp_btf programs on inet_sock_set_state), prints "attached",
 * and keeps them attached until SIGINT or SIGTERM. bench/run.ts's floor mode.
 *
 *   node --import tsx bench/floor.ts [build/floor.bpf.o]
 */
import path from 'node:path';
import * as bpf from '../native/libbpf.js';
import { root } from './tracers.js';

const object = bpf.objectOpen(process.argv[2] ?? path.join(root, 'build/floor.bpf.o'));
bpf.objectLoad(object);
const links = ['floor_primary', 'floor_fallback'].map((name) => bpf.programAttach(bpf.findProgram(object, name), 'tp_btf/inet_sock_set_state'));
console.error('floor: attached');
const stop = () => {
	for (const link of links) bpf.linkDestroy(link);
	bpf.objectClose(object);
	process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
setInterval(() => undefined, 1 << 30);
