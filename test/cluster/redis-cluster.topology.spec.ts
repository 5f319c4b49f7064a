import { Cluster } from 'ioredis';
import { startRedisCluster, RedisClusterTopology } from '../servers/redis-cluster.topology';

/**
 * The Redis Cluster topology the Cluster backend's tests will run on (issue 11): it starts on
 * loopback, spreads the slots over its primaries and stops by PID.
 */
describe('the Redis Cluster test topology', () => {
  let cluster: RedisClusterTopology;

  beforeAll(async () => {
    cluster = await startRedisCluster({ primaries: 3, replicasPerPrimary: 1 });
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves keys of every slot range through an ioredis Cluster', async () => {
    const client = new Cluster([...cluster.startupNodes], { lazyConnect: false });
    try {
      const keys = ['{a}x', '{b}x', '{c}x', 'user:1', 'user:2', 'order:7'];
      for (const key of keys) await client.set(key, key);
      expect(await Promise.all(keys.map((k) => client.get(k)))).toEqual(keys);
      expect(client.nodes('master')).toHaveLength(3);
      // One replica per primary, as the cluster itself reports it.
      const table = (await client.nodes('master')[0].cluster('NODES')) as string;
      const roles = table
        .trim()
        .split('\n')
        .map((line) => (line.includes('master') ? 'master' : 'slave'));
      expect(roles.sort()).toEqual(['master', 'master', 'master', 'slave', 'slave', 'slave']);
    } finally {
      client.disconnect();
    }
  });

  it('listens on 127.0.0.1 only', () => {
    expect(cluster.startupNodes.every((n) => n.host === '127.0.0.1')).toBe(true);
    expect(new Set(cluster.nodes.map((n) => n.pid)).size).toBe(6);
  });
});
