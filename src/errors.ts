/**
 * Errors users see. Inner layers throw these (or plain errors with a cause); src/cli.ts is the only
 * place that prints them and sets the exit code. Tests assert on the exported message constants.
 */

export const ExitCode = {
	ok: 0,
	failure: 1,
	usage: 2,
} as const;

export class TwtraceError extends Error {
	constructor(
		message: string,
		readonly hint = '',
		readonly exitCode: number = ExitCode.failure,
		options?: { cause?: unknown },
	) {
		super(message, options);
		this.name = 'TwtraceError';
	}
}

export const needsPrivilegesMessage = 'needs root, or CAP_BPF + CAP_PERFMON (Linux ≥ 5.8)';
export const missingBtfMessage = 'kernel BTF missing: /sys/kernel/btf/vmlinux not found (kernel built without CONFIG_DEBUG_INFO_BTF)';
export const missingLibbpfMessage = 'libbpf.so.1 not found';
export const missingObjectMessage = 'BPF object not built';
export const noRingbufMessage = 'BPF ring buffer not supported';
export const dropHint = 'Raise --ring-size or narrow the trace with --kind, --pid, --port or --netns';

export function needsPrivileges(command: string): TwtraceError {
	const agent = ['top', 'doctor', 'report'].includes(command) ? ' (or, with the agent running, as a member of the twtrace group: no root needed)' : '';
	return new TwtraceError(needsPrivilegesMessage, `Try: sudo twtrace ${command}${agent}`);
}

export function missingLibbpf(cause: unknown): TwtraceError {
	return new TwtraceError(missingLibbpfMessage, 'Install it: apt-get install libbpf1 (Debian, Ubuntu), dnf install libbpf (Fedora, RHEL); in a checkout, scripts/setup', ExitCode.failure, { cause });
}

export function missingBtf(): TwtraceError {
	return new TwtraceError(missingBtfMessage, 'twtrace relies on CO-RE and tp_btf programs, which need a kernel with BTF');
}

export function missingObject(path: string): TwtraceError {
	return new TwtraceError(`${missingObjectMessage}: ${path} not found`, 'Build it: scripts/setup');
}

export function noRingbuf(kernel: string): TwtraceError {
	return new TwtraceError(`${noRingbufMessage} (requires Linux ≥ 5.8, running ${kernel})`);
}

/** A command-line value that is not acceptable: exit 2, like commander's own usage errors. */
export function usageError(message: string, hint = 'See: twtrace --help'): TwtraceError {
	return new TwtraceError(message, hint, ExitCode.usage);
}
