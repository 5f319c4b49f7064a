/** @type {import('jest').Config} */
module.exports = {
  rootDir: '.',
  testEnvironment: 'node',
  testMatch: [
    '<rootDir>/lib/**/*.spec.ts',
    '<rootDir>/test/**/*.spec.ts',
    '<rootDir>/sample-app/**/*.spec.ts',
  ],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }],
  },
  moduleNameMapper: {
    '^nestjs-distributed-lock$': '<rootDir>/lib/index.ts',
    '^nestjs-distributed-lock/backend$': '<rootDir>/lib/backend.ts',
    '^nestjs-distributed-lock/testing$': '<rootDir>/lib/testing.ts',
    '^nestjs-distributed-lock/(prometheus|opentelemetry|terminus)$': '<rootDir>/lib/$1.ts',
  },
  globalSetup: '<rootDir>/test/servers/global-setup.ts',
  globalTeardown: '<rootDir>/test/servers/global-teardown.ts',
  testTimeout: 30000,
  maxWorkers: 2,
};
