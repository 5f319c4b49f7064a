import { join } from 'node:path';
import type { ResourceMode } from '../history/history.event';
import { LabChildProcess } from '../runtime/lab-child.process';
import { ResourceClient } from './resource.client';

/** The resource server running in its own process, and a client for the lab's own calls. */
export class ResourceProcess {
  private constructor(
    readonly child: LabChildProcess,
    readonly port: number,
    readonly client: ResourceClient,
  ) {}

  static async start(mode: ResourceMode, historyPath: string): Promise<ResourceProcess> {
    const child = LabChildProcess.start('resource', join(__dirname, 'resource.main.ts'), {
      mode,
      historyPath,
    });
    try {
      const { port } = (await child.next('listening', 20_000)) as unknown as { port: number };
      return new ResourceProcess(child, port, new ResourceClient(port));
    } catch (err) {
      await child.stop(1000);
      throw err;
    }
  }

  setMode(mode: ResourceMode): Promise<void> {
    return this.client.setMode(mode);
  }

  async stop(): Promise<void> {
    this.client.close();
    await this.child.stop(5000);
  }
}
