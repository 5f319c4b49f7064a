import { readFileSync } from 'node:fs';
import type { HistoryEvent } from './history.event';

/**
 * Every event of the given history files, ordered by time (ties keep file order). A last line
 * cut short (a process killed mid-write) is skipped; any other malformed line is an error.
 */
export function readHistory(files: readonly string[]): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  for (const file of files) {
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, index) => {
      if (line.trim() === '') return;
      try {
        events.push(JSON.parse(line) as HistoryEvent);
      } catch (err) {
        if (index === lines.length - 1) return;
        throw new Error(`${file}:${index + 1}: not a history event: ${String(err)}`);
      }
    });
  }
  return sortHistory(events);
}

/** Events in time order; stable, so one process's events of equal time keep their order. */
export function sortHistory(events: readonly HistoryEvent[]): HistoryEvent[] {
  return events
    .map((event, index) => ({ event, index }))
    .sort((a, b) => a.event.t - b.event.t || a.index - b.index)
    .map(({ event }) => event);
}
