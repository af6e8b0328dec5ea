/** Prints the result of a command: JSON with --json, otherwise lines a person reads. */
export interface Output {
  json(value: unknown): void;
  line(text?: string): void;
  table(rows: readonly Record<string, unknown>[], columns: readonly string[]): void;
  error(text: string): void;
}

export function createOutput(stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream): Output {
  return {
    json(value) {
      stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    },
    line(text = '') {
      stdout.write(`${text}\n`);
    },
    table(rows, columns) {
      const cells = rows.map((row) => columns.map((column) => formatCell(row[column])));
      const widths = columns.map((column, index) =>
        Math.max(column.length, ...cells.map((row) => row[index]!.length)),
      );
      const render = (values: readonly string[]) =>
        values
          .map((value, index) => value.padEnd(widths[index]!))
          .join('  ')
          .trimEnd();
      stdout.write(`${render(columns.map((column) => column.toUpperCase()))}\n`);
      for (const row of cells) stdout.write(`${render(row)}\n`);
    },
    error(text) {
      stderr.write(`${text}\n`);
    },
  };
}

function formatCell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.join(',');
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}
