import { LockBackendError } from '../../errors/lock-backend.error';
import { MemoryLockBackend } from './memory.backend';

const ref = (key: string, token: string) => ({ keys: [key], token });

describe('MemoryLockBackend', () => {
  let backend: MemoryLockBackend;
  beforeEach(() => (backend = new MemoryLockBackend({ claimWindow: 100 })));
  afterEach(() => backend.close());

  it('keeps state only for keys that are held or awaited', async () => {
    for (let i = 0; i < 1000; i++) {
      const r = ref(`k${i}`, `t${i}`);
      expect((await backend.acquire({ ...r, ttl: 1000 })).acquired).toBe(true);
      expect(await backend.release(r)).toBe(true);
    }
    expect(backend.trackedKeys).toBe(0);
    await backend.acquire({ ...ref('busy', 'a'), ttl: 1000 });
    await backend.acquire({ ...ref('busy', 'b'), ttl: 1000, queueFor: 1000 });
    expect(backend.trackedKeys).toBe(1);
    await backend.cancel(ref('busy', 'b'));
    await backend.release(ref('busy', 'a'));
    expect(backend.trackedKeys).toBe(0);
  });

  it('answers ping while open and rejects it once closed; names no server', async () => {
    expect(backend.endpoint).toBe('in-process');
    await expect(backend.ping()).resolves.toBeUndefined();
    await backend.close();
    await expect(backend.ping()).rejects.toThrow(LockBackendError);
    await expect(backend.ping()).rejects.toThrow(/closed/);
  });

  it('rejects an unknown option, suggesting the known one', () => {
    expect(() => new MemoryLockBackend({ claimWindw: 10 } as never)).toThrow(
      /unknown option "claimWindw"; did you mean "claimWindow"/,
    );
  });
});
