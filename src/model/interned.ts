/**
 * Objects referred to by a small integer id, counted: the TIME_WAIT population keeps a u32 per
 * socket for its owner and its port pool instead of an object reference (no pointer per socket for
 * the garbage collector to trace), and an id is freed, and reused, when no socket refers to it. Pure.
 */
/** Objects referred to by a small id, freed when no socket refers to them any more. */
export class Interned<T> {
	readonly #ids = new Map<T, number>();
	readonly #values: (T | undefined)[] = [undefined]; // id 0: none
	readonly #refs: number[] = [0];
	readonly #free: number[] = [];

	ref(value: T | undefined): number {
		if (value === undefined) return 0;
		let id = this.#ids.get(value);
		if (id === undefined) {
			id = this.#free.pop() ?? this.#values.length;
			this.#ids.set(value, id);
			this.#values[id] = value;
			this.#refs[id] = 0;
		}
		this.#refs[id]!++;
		return id;
	}

	unref(id: number): void {
		if (id === 0 || --this.#refs[id]! > 0) return;
		this.#ids.delete(this.#values[id]!);
		this.#values[id] = undefined;
		this.#free.push(id);
	}

	get(id: number): T | undefined {
		return this.#values[id];
	}
}
