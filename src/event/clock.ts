/**
 * The kernel's timer-wheel clock as read_clock reports it (struct twt_clock): jiffies and
 * CLOCK_MONOTONIC read together, and CONFIG_HZ. Kept in a capture's header (`wheel`), so that a
 * replay ends counted TIME_WAIT entries where the live model did (model/wheel.ts).
 */
import { CLOCK_FIELDS as F, CLOCK_SIZE } from './layout.generated.js';
import { HOST_LITTLE_ENDIAN } from './host-order.js';

export interface WheelClock {
	/** CONFIG_HZ: jiffies a second. */
	hz: number;
	/** jiffies at `atUs`. */
	jiffies: number;
	/** CLOCK_MONOTONIC µs. */
	atUs: number;
}

/** read_clock's context as the kernel filled it; undefined where the kernel's HZ is not known. */
export function decodeClock(ctx: Uint8Array): WheelClock | undefined {
	if (ctx.byteLength < CLOCK_SIZE) throw new RangeError(`a clock of ${ctx.byteLength} bytes`);
	const v = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
	const hz = v.getUint32(F.hz.offset, HOST_LITTLE_ENDIAN);
	if (hz === 0) return undefined;
	return { hz, jiffies: Number(v.getBigUint64(F.jiffies.offset, HOST_LITTLE_ENDIAN)), atUs: Number(v.getBigUint64(F.ktime_ns.offset, HOST_LITTLE_ENDIAN)) / 1000 };
}

/** Whether `w` (a capture header's, JSON) is a wheel clock. */
export function isWheelClock(w: unknown): w is WheelClock {
	if (typeof w !== 'object' || w === null) return false;
	const c = w as Record<string, unknown>;
	return Number.isSafeInteger(c.hz) && (c.hz as number) > 0 && Number.isSafeInteger(c.jiffies) && (c.jiffies as number) >= 0 && Number.isFinite(c.atUs) && (c.atUs as number) >= 0;
}
