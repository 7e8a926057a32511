/**
 * How a size is written wherever twtrace shows one (ring and recorder sizes, files written):
 * 8388608 → "8 MiB", 1536 → "1.5 KiB". Pure.
 */
export function formatBytes(n: number): string {
	if (n >= 1 << 30) return `${Math.round((n / (1 << 30)) * 10) / 10} GiB`;
	if (n >= 1 << 20) return `${Math.round((n / (1 << 20)) * 10) / 10} MiB`;
	return `${Math.round((n / 1024) * 10) / 10} KiB`;
}
