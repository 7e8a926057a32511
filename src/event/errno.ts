import os from 'node:os';

const names = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** The symbolic name of a positive errno on this platform ("EADDRNOTAVAIL"), or undefined. */
export function errnoName(errno: number): string | undefined {
	return names.get(errno);
}
