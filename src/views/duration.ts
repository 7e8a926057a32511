/**
 * How a span of time is written everywhere twtrace shows one (uptimes, windows, replay positions,
 * a report's length, the doctor's sample): precise where it is short, round where it is long.
 *   0.8 → "0.8 s", 42 → "42 s", 600 → "10 min", 11520 → "3.2 h". Pure.
 */
export function formatDuration(seconds: number): string {
	if (seconds < 10) return `${Math.round(seconds * 10) / 10} s`;
	if (seconds < 120) return `${Math.round(seconds)} s`;
	if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
	return `${(seconds / 3600).toFixed(1)} h`;
}
