import { Injectable, Module } from '@nestjs/common';
import { isObservable, lastValueFrom, Observable, timer, map } from 'rxjs';
import { Test, TestingModule } from '@nestjs/testing';
import { join } from 'node:path';
import ts from 'typescript';
import {
  DistributedLockModule,
  Locked,
  LockError,
  LockNotAcquiredError,
  LockService,
} from 'nestjs-distributed-lock';
import { DistributedLockTestingModule, LockTesting } from 'nestjs-distributed-lock/testing';

@Injectable()
class GreetingService {
  runs = 0;

  @Locked('hello:<name>', { wait: 0 })
  async greet(name: string): Promise<string> {
    this.runs++;
    return `Hello ${name}!`;
  }

  @Locked('feed:<id>', { wait: 0 })
  feed(id: string): Observable<string> {
    return timer(20).pipe(map(() => `feed ${id}`));
  }

  @Locked('job:nightly', { onBusy: 'skip', wait: 0 })
  async nightly(): Promise<string> {
    this.runs++;
    return 'ran';
  }
}

describe('the testing kit (nestjs-distributed-lock/testing)', () => {
  let moduleRef: TestingModule;
  let service: GreetingService;
  let testing: LockTesting;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [DistributedLockTestingModule.forRoot()],
      providers: [GreetingService],
    }).compile();
    await moduleRef.init();
    service = moduleRef.get(GreetingService);
    testing = moduleRef.get(LockTesting);
  });

  afterEach(async () => {
    jest.useRealTimers();
    await moduleRef.close();
  });

  it('runs a @Locked method under its lock and records the grant', async () => {
    await expect(service.greet('Ann')).resolves.toBe('Hello Ann!');
    expect(testing.wasLocked('hello:Ann')).toBe(true);
    expect(testing.wasLocked('hello:Bob')).toBe(false);
    expect(testing.grants()).toEqual([
      { keys: ['hello:Ann'], ttl: 30_000, fencingTokens: [expect.any(Number)], released: true },
    ]);
    testing.clear();
    expect(testing.grants()).toEqual([]);
  });

  it('makes a key busy as another instance would', async () => {
    const busy = await testing.hold('hello:Ann');
    await expect(service.greet('Ann')).rejects.toBeInstanceOf(LockNotAcquiredError);
    await expect(service.nightly()).resolves.toBe('ran');
    const job = await testing.hold('job:nightly');
    await expect(service.nightly()).resolves.toBeUndefined();
    expect(service.runs).toBe(1);
    await busy.release();
    await job.release();
    await expect(service.greet('Ann')).resolves.toBe('Hello Ann!');
    // hold() is the other instance: only the application's own grants are recorded.
    expect(testing.grants().map((g) => g.keys)).toEqual([['job:nightly'], ['hello:Ann']]);
  });

  it("gives each forRoot() its own backend: one test's locks never reach another's", async () => {
    const other = await Test.createTestingModule({
      imports: [DistributedLockTestingModule.forRoot()],
    }).compile();
    try {
      await other.get(LockTesting).hold('hello:Ann');
      await expect(service.greet('Ann')).resolves.toBe('Hello Ann!');
    } finally {
      await other.close();
    }
  });

  it('lets jest fake timers move ttls: an unrenewed lock expires after its ttl', async () => {
    jest.useFakeTimers();
    const locks = moduleRef.get(LockService);
    const lock = await locks.acquire('report', { ttl: 1_000, renew: false });
    // The holder counts its lock valid a little less than the ttl (a clock-drift margin).
    await jest.advanceTimersByTimeAsync(980);
    expect(lock.held).toBe(true);
    await expect(testing.hold('report')).rejects.toBeInstanceOf(LockNotAcquiredError);
    await jest.advanceTimersByTimeAsync(21);
    expect(lock.held).toBe(false);
    const taken = await testing.hold('report');
    expect(taken.fencingToken).toBeGreaterThan(lock.fencingToken);
  });

  it('keeps an Observable method an Observable: locked from subscription until it completes', async () => {
    const feed = service.feed('1');
    expect(isObservable(feed)).toBe(true);
    // Cold: nothing is locked before someone subscribes.
    expect(testing.wasLocked('feed:1')).toBe(false);
    const value = lastValueFrom(feed);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(testing.isHeld('feed:1')).toBe(true);
    await expect(value).resolves.toBe('feed 1');
    expect(testing.isHeld('feed:1')).toBe(false);
    const busy = await testing.hold('feed:1');
    await expect(lastValueFrom(service.feed('1'))).rejects.toBeInstanceOf(LockNotAcquiredError);
    await busy.release();
  });

  it('gives each test module its own backend even from one shared forRoot() result', async () => {
    const shared = DistributedLockTestingModule.forRoot();
    const [a, b] = await Promise.all(
      [0, 1].map(() => Test.createTestingModule({ imports: [shared] }).compile()),
    );
    try {
      const held = await a.get(LockTesting).hold('k');
      const other = await b.get(LockTesting).hold('k');
      await a.close();
      expect(held.held).toBe(false);
      expect(other.held).toBe(true);
    } finally {
      await b.close();
    }
  });

  it('refuses to stand beside the real module, which would leave the kit watching nothing', async () => {
    @Module({ imports: [DistributedLockModule.forRoot()], providers: [GreetingService] })
    class AppModule {}
    await expect(
      Test.createTestingModule({
        imports: [AppModule, DistributedLockTestingModule.forRoot()],
      }).compile(),
    ).rejects.toThrow(/also imports DistributedLockModule/);
  });

  it('rejects unknown options by name', () => {
    expect(() =>
      DistributedLockTestingModule.forRoot({ tll: 5 } as unknown as Parameters<
        typeof DistributedLockTestingModule.forRoot
      >[0]),
    ).toThrow(/unknown option "tll"; did you mean "ttl"\?/);
  });
});

describe('@Locked without the module', () => {
  it('compiles in a testing module, and the call names the class, the method and the fix', async () => {
    const moduleRef = await Test.createTestingModule({ providers: [GreetingService] }).compile();
    try {
      const call = moduleRef.get(GreetingService).greet('Ann');
      await expect(call).rejects.toBeInstanceOf(LockError);
      await expect(call).rejects.toThrow(
        /@Locked on GreetingService\.greet: no LockService was injected\. Import DistributedLockModule\.forRoot\(\).*DistributedLockTestingModule\.forRoot\(\) from 'nestjs-distributed-lock\/testing'/,
      );
    } finally {
      await moduleRef.close();
    }
  });
});

describe('@Locked types', () => {
  it('is a compile error on a method that returns neither a Promise nor an Observable', () => {
    const root = join(__dirname, '..', '..');
    const file = join(root, 'test', 'testing', '__locked-types.fixture.ts');
    const source = `
      import { Observable, of } from 'rxjs';
      import { Locked } from 'nestjs-distributed-lock';
      export class AppService {
        @Locked('hello')
        getHello(): string { return 'Hello World!'; }
        @Locked('a') async fine(): Promise<string> { return 'x'; }
        @Locked('b') stream(): Observable<number> { return of(1); }
        @Locked('c') thenable(): PromiseLike<number> { return Promise.resolve(1); }
      }
    `;
    const host = ts.createCompilerHost({});
    const read = host.readFile.bind(host);
    host.readFile = (name) => (name === file ? source : read(name));
    const exists = host.fileExists.bind(host);
    host.fileExists = (name) => name === file || exists(name);
    const program = ts.createProgram(
      [file],
      {
        strict: true,
        noEmit: true,
        experimentalDecorators: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
        baseUrl: root,
        paths: { 'nestjs-distributed-lock': ['lib/index.ts'] },
        lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
      },
      host,
    );
    const errors = ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => ({
      line: d.file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0).line : -1,
      text: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
    }));
    // Exactly one error, on the sync method's decorator (line 4 of the source).
    expect(errors).toEqual([
      {
        line: 4,
        text: expect.stringContaining(
          '@Locked applies only to methods that return a Promise or an Observable: make the method async',
        ),
      },
    ]);
  }, 30_000);
});
