/**
 * The resource server as its own process (`node -r runtime/typescript.register.js
 * resource.main.ts '{"mode":"fenced","historyPath":"…"}'`), so no pause or load of the lab's
 * other processes delays its verdicts. Prints `{"event":"listening","port":N}`; exits, history
 * flushed, when its stdin closes (so it never outlives the lab) or on SIGTERM.
 */
import type { ResourceMode } from '../history/history.event';
import { HistoryWriter } from '../history/history.writer';
import { ResourceServer } from './resource.server';

async function main(): Promise<void> {
  const { mode, historyPath } = JSON.parse(process.argv[2] ?? '{}') as {
    mode: ResourceMode;
    historyPath: string;
  };
  const history = new HistoryWriter(historyPath);
  const server = new ResourceServer(mode, history);
  const port = await server.listen();
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void server.close().finally(() => {
      history.close();
      process.exit(0);
    });
  };
  process.stdin.on('end', stop).on('close', stop).resume();
  process.on('SIGTERM', stop);
  process.stdout.write(`${JSON.stringify({ event: 'listening', port })}\n`);
}

main().catch((err: unknown) => {
  process.stdout.write(`${JSON.stringify({ event: 'crashed', message: String(err) })}\n`);
  process.exit(1);
});
