/**
 * The tasks events refer to by id (struct twt_task records, bpf/twtrace.h): the BPF program sends
 * what belongs to a task once, and every event carries only its owner's and closer's ids. One table
 * per stream (a live ring, or a whole capture), filled as task records arrive in stream order.
 */

export interface TaskInfo {
	readonly pid: number;
	readonly tid: number;
	readonly uid: number;
	readonly comm: string;
}

export const NO_TASK: TaskInfo = { pid: 0, tid: 0, uid: 0, comm: '' };

/**
 * Tasks kept at most: beyond, the oldest is forgotten (an event that still refers to it is then
 * unattributed, and counted in `unknown`). A task costs ~100 bytes; the kernel's own table holds 65,536.
 */
export const MAX_TASKS = 1_000_000;

export class TaskTable {
	readonly #tasks = new Map<number, TaskInfo>();
	readonly #max: number;
	/** Events that referred to a task id this table does not hold (its record lost, or forgotten). */
	unknown = 0;

	constructor(max = MAX_TASKS) {
		this.#max = max;
	}

	get size(): number {
		return this.#tasks.size;
	}

	set(id: number, task: TaskInfo): void {
		if (this.#tasks.size >= this.#max && !this.#tasks.has(id)) this.#tasks.delete(this.#tasks.keys().next().value!);
		this.#tasks.set(id, task);
	}

	/** The task `id` (0: none, NO_TASK); NO_TASK, counted in `unknown`, when it is not held. */
	get(id: number): TaskInfo {
		if (id === 0) return NO_TASK;
		const task = this.#tasks.get(id);
		if (task) return task;
		this.unknown++;
		return NO_TASK;
	}
}
