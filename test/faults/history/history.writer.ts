import { closeSync, openSync, writeSync } from 'node:fs';
import type { HistoryEvent } from './history.event';

/**
 * Appends history events to one JSON-lines file. Lines are buffered and written in batches
 * (synchronously, so a flush never interleaves with another event), at most `flushMs` apart and
 * always on `close()`; a process frozen by SIGSTOP simply writes its lines later.
 */
export class HistoryWriter {
  private readonly fd: number;
  private lines: string[] = [];
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly path: string,
    flushMs = 100,
  ) {
    this.fd = openSync(path, 'a');
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
  }

  log(event: HistoryEvent): void {
    if (this.closed) return;
    this.lines.push(JSON.stringify(event));
    if (this.lines.length >= 1000) this.flush();
  }

  flush(): void {
    if (this.lines.length === 0 || this.closed) return;
    const text = `${this.lines.join('\n')}\n`;
    this.lines = [];
    writeSync(this.fd, text);
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    clearInterval(this.timer);
    closeSync(this.fd);
  }
}
