import { ensureBinary, freePort, ServerProcess, startServer } from './server.process';

/**
 * Starts a throwaway redis-server on a free 127.0.0.1 port, no persistence. Pass `port` (and
 * `dir`) to restart one on the same address.
 */
export async function startRedis(
  options: { port?: number; dir?: string; extraArgs?: string[] } = {},
): Promise<ServerProcess> {
  const binary = ensureBinary('redis-server', 'redis-server');
  const port = options.port ?? (await freePort());
  return startServer({
    name: 'redis',
    binary,
    port,
    dir: options.dir,
    args: (dir) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--protected-mode',
      'yes',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--daemonize',
      'no',
      ...(options.extraArgs ?? []),
    ],
  });
}
