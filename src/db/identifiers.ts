/**
 * Quotes an SQL identifier. Identifiers are quoted once, where they are derived (entity names
 * from validated config, schema names from tenant ids), and then travel as SQL fragments.
 */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.length > 63 || name.includes('\u0000'))
    throw new Error('invalid SQL identifier');
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes an SQL string literal, for the few statements that take no parameters (DDL, COPY). */
export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A schema-qualified table name, quoted. */
export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}
