import { ensureBinary, freePort, ServerProcess, startServer } from './server.process';

/** One member of a test etcd cluster. */
export interface EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** Shared by every member of one cluster: etcd rejects peers with another token. */
  readonly clusterToken: string;
}

/** Free ports for an etcd cluster of `size` members on 127.0.0.1. */
export async function planEtcdCluster(size: number): Promise<EtcdMember[]> {
  const members: EtcdMember[] = [];
  const clusterToken = `ndl-${process.pid}-${Date.now()}`;
  for (let i = 0; i < size; i++) {
    members.push({
      name: `m${i}`,
      clientPort: await freePort(),
      peerPort: await freePort(),
      clusterToken,
    });
  }
  return members;
}

/** Starts one etcd member of `cluster` (all members share the initial-cluster list). */
export async function startEtcdMember(
  member: EtcdMember,
  cluster: readonly EtcdMember[],
  options: { dir?: string; token?: string; waitReady?: boolean } = {},
): Promise<ServerProcess> {
  const binary = ensureBinary('etcd', 'etcd-server');
  const initialCluster = cluster.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  return startServer({
    name: `etcd-${member.name}`,
    binary,
    port: member.clientPort,
    dir: options.dir,
    readyTimeoutMs: 30_000,
    args: (dir) => [
      '--name',
      member.name,
      '--data-dir',
      `${dir}/data`,
      '--listen-client-urls',
      `http://127.0.0.1:${member.clientPort}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${member.clientPort}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${member.peerPort}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${member.peerPort}`,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-token',
      options.token ?? `ndl-${process.pid}-${Date.now()}`,
      '--initial-cluster-state',
      'new',
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      '--logger',
      'zap',
      '--log-level',
      'warn',
    ],
  });
}

/** Starts a single-node etcd on free 127.0.0.1 ports with a temporary data dir. */
export async function startEtcd(): Promise<ServerProcess> {
  const [member] = await planEtcdCluster(1);
  return startEtcdMember(member, [member]);
}
