/**
 * A flood on a fixed schedule, in a process of its own: `steadyLoad` at FLOOD_RATE requests per
 * second for FLOOD_DURATION seconds to FLOOD_URL with the key FLOOD_KEY, spread evenly over each
 * second (autocannon's `-R` sends each connection's quota for a second back to back at its start).
 * Prints `{"statuses": {"200": n, "429": m, ...}}` on stdout when done.
 */
import { steadyLoad } from '../lib/steady-load.js';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}

const target = new URL(required('FLOOD_URL'));
const headers = { 'x-api-key': required('FLOOD_KEY') };
const result = await steadyLoad({
  url: target.origin,
  rate: Number(required('FLOOD_RATE')),
  durationSeconds: Number(required('FLOOD_DURATION')),
  connections: Number(process.env.FLOOD_CONNECTIONS ?? '20'),
  next: () => ({ path: target.pathname, headers }),
});
process.stdout.write(`${JSON.stringify({ statuses: Object.fromEntries(result.statuses) })}\n`);
