import type { Command } from 'commander';
import { runDoctor } from '../../operations/doctor/run-doctor.js';
import { type CliContext, command, ExitCode, type GlobalOptions } from '../cli-context.js';

const MARK = { ok: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;

/** `tenantry doctor`: what is wrong with this deployment and how to fix it (exit 1 when a check fails). */
export function doctorCommand(program: Command, cli: CliContext): void {
  command(program, 'doctor', 'check this deployment and say what to fix (exit 1 when a check fails)').action(
    async (options: GlobalOptions) => {
      const report = await cli.operations(options, (run) => run(runDoctor, {}));
      if (options.json) cli.out.json(report);
      else {
        for (const check of report.checks) {
          cli.out.line(`${MARK[check.status]}  ${check.name}: ${check.detail}`);
          if (check.fix) cli.out.line(`      fix: ${check.fix}`);
        }
      }
      if (!report.ok) cli.setExitCode(ExitCode.FAILURE);
    },
  );
}
