import type { Section } from './archive-format.js';
import type { ArchiveEvent } from './archive-reader.js';

/** Pulls the reader's events one at a time: a section's chunks feed one COPY while the loop waits. */
export class EventCursor {
  readonly #events: AsyncIterator<ArchiveEvent>;
  current: ArchiveEvent | undefined;

  constructor(events: AsyncIterator<ArchiveEvent>) {
    this.#events = events;
  }

  async advance(): Promise<ArchiveEvent | undefined> {
    const next = await this.#events.next();
    this.current = next.done ? undefined : next.value;
    return this.current;
  }

  /** The chunks of the current section, up to its `section-end` (where the cursor is left). */
  async *chunks(): AsyncIterable<Buffer> {
    while (this.current?.kind === 'chunk') {
      yield this.current.data;
      await this.advance();
    }
  }

  async close(): Promise<void> {
    await this.#events.return?.(undefined);
  }
}

/** The section an event belongs to; undefined for the header and the end. */
export function sectionOf(event: ArchiveEvent | undefined): Section | undefined {
  return event && (event.kind === 'chunk' || event.kind === 'section-end') ? event.section : undefined;
}
