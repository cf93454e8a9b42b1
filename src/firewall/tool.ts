import { runProgram, type RunProgramOptions } from '../exec.js';

export type RunToolOptions = Omit<RunProgramOptions, 'code' | 'timeoutCode' | 'idle' | 'onStdout'> & {
  /** A tool still running after this many ms is stopped. */
  timeout: number;
  /** Names the command in error messages: `/sbin/pfctl -t spamd-white -T replace`. */
  what: string;
};

/**
 * Runs a firewall tool (pfctl, nft) once and resolves with its stdout; rejects with a one-line
 * E_FIREWALL error, or E_FIREWALL_TIMEOUT when it was stopped at its deadline.
 */
export function runTool(opts: RunToolOptions): Promise<string> {
  return runProgram({ ...opts, code: 'E_FIREWALL', timeoutCode: 'E_FIREWALL_TIMEOUT' });
}
