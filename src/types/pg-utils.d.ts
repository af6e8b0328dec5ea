declare module 'pg/lib/utils.js' {
  /** How pg turns a JavaScript value into a wire parameter (Date, Buffer, arrays, JSON, ...). */
  export function prepareValue(value: unknown): unknown;
}
